"""Learning from the verifier works: a tiny ternary model, trained for seconds on executor-labelled
deduction tasks, solves held-out tasks (another seed, never trained on) that it could not before."""

from random import Random

import torch

from bitzero.model import BitZeroLM, ModelConfig
from bitzero.selfplay import Sandbox
from bitzero.selfplay.agent import Agent
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.evaluate import solve_rates, wilson_interval
from bitzero.selfplay.experiment import label_all
from bitzero.selfplay.generator import generate_tasks
from bitzero.selfplay.learn import sft_steps, solver_examples
from bitzero.selfplay.loop import make_trainer
from bitzero.selfplay.verify import Verifier
from bitzero.text import Tokenizer


def test_verified_sft_raises_the_heldout_solve_rate_on_easy_deduction():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tokenizer = Tokenizer.default()
    model = BitZeroLM(ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=64, block_size=64))
    cfg = SelfPlayConfig(device="cpu")
    with Sandbox() as box:
        verifier = Verifier(box)
        heldout = label_all(verifier, generate_tasks(40, seed=99, kinds=["deduction"], levels=[1]))
        train = label_all(verifier, generate_tasks(400, seed=1, kinds=["deduction"], levels=[1],
                                                   exclude={t.key for t in heldout}))
        assert not {t.key for t in heldout} & {t.key for t in train}
        agent = Agent(model, tokenizer)
        before = solve_rates(agent, verifier, heldout, cfg.answer_tokens)["deduction"]
        stats = sft_steps(make_trainer(model, cfg, 3e-3), solver_examples(agent, train), 200, 32, Random(0))
        after = solve_rates(agent, verifier, heldout, cfg.answer_tokens)["deduction"]
    assert stats["steps"] == 200
    assert before["solved"] == 0
    assert after["solved"] >= 4, after
    assert wilson_interval(after["solved"], after["tasks"])[0] > before["rate"]


def test_supervised_batches_come_from_one_length_bucket():
    from bitzero.selfplay.learn import length_buckets
    from bitzero.train.batching import Example

    examples = [Example([1] * n, [True] * n) for n in (10, 30, 40, 60, 100, 120)]
    assert [[len(e.ids) for e in group] for group in length_buckets(examples)] == [[10, 30], [40], [60], [100, 120]]


def test_agent_samples_and_greedy_answers_match_with_and_without_cache():
    torch.manual_seed(0)
    tokenizer = Tokenizer.default()
    model = BitZeroLM(ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=32, block_size=48))
    prompts = ["Compute:\n1 + 2", "Output?\ndef f(x):\n    return x\nf(3)", "x" * 200]
    cached = Agent(model, tokenizer).sample(prompts, 6, temperature=0.0)
    plain = Agent(model, tokenizer, use_cache=False).sample(prompts, 6, temperature=0.0)
    assert [c.tokens for c in cached] == [c.tokens for c in plain]
    assert cached[2].tokens == () and not cached[2].finished  # no room to answer: empty, unfinished
    assert all(len(c.tokens) == len(c.logprobs) for c in cached)
