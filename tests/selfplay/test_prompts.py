"""Prompts are chats in the tokenizer's template that fit the stage's context, replies parse into
answers, and rollouts stop at the tokenizer's stop ids."""

from pathlib import Path

import pytest
import yaml

from bitzero.selfplay.agent import Agent
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.generator import LEVELS, generate_tasks
from bitzero.selfplay.prompts import SOLVER_SYSTEM, extract_answer, proposer_prompt, solver_prompt
from bitzero.selfplay.tasks import FormatError, Task, parse_proposal, render_proposal
from tests.tiny import tiny_model, tiny_tokenizer

ADD = Task("deduction", "def f(x):\n    return x + 3", ("4",), ("7",))
REPO = Path(__file__).resolve().parents[2]


def test_solver_prompts_are_chats_in_the_template_that_hide_the_answer():
    tokenizer = tiny_tokenizer()
    abduction = Task("abduction", ADD.program, ("4",), ("7",))
    induction = Task("induction", "def f(x):\n    return x + 1", ("1", "2", "3", "4"), ("2", "3", "4", "5"))
    deduction = solver_prompt(ADD)
    assert [turn["role"] for turn in deduction] == ["system", "user"] and deduction[0]["content"] == SOLVER_SYSTEM
    assert "f(4)" in deduction[1]["content"] and "7" not in deduction[1]["content"]
    assert "f(x) == 7" in solver_prompt(abduction)[1]["content"] and "4" not in solver_prompt(abduction)[1]["content"]
    assert "f(2) == 3" in solver_prompt(induction)[1]["content"] and "f(3) == 4" not in solver_prompt(induction)[1]["content"]
    text = tokenizer.decode(tokenizer.encode_chat(deduction, add_generation_prompt=True))
    assert text.startswith(f"<|im_start|>system\n{SOLVER_SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_micro_profile_prompts_fit_its_context():
    """Every generator task's solver prompt fits the micro profile's prompt budget, and a budget
    plus the longest reply fits the tiny model (the real profiles are sized in their YAML)."""
    params = yaml.safe_load((REPO / "conf" / "test" / "parameters_selfplay.yml").read_text())["selfplay"]
    params.pop("chat_guard")  # the stage's own setting, not the experiment's
    cfg = SelfPlayConfig.from_dict(params)
    tokenizer = tiny_tokenizer()
    tasks = [t.labelled(["[1, 2, 3, 4]"] * len(t.inputs)) for t in generate_tasks(3, seed=0, levels=LEVELS)]
    agent = Agent(tiny_model(tokenizer), tokenizer, max_prompt_tokens=cfg.max_prompt_tokens)
    assert all(agent.fits(solver_prompt(t)) for t in tasks)
    assert agent.fits(proposer_prompt("induction", []))
    assert cfg.max_prompt_tokens + max(cfg.proposal_tokens, *cfg.answer_tokens.values()) <= agent.model.config.block_size


@pytest.mark.parametrize(("kind", "reply", "answer"), [
    ("deduction", "7", "7"), ("deduction", "f(4) is 7.", "7"), ("deduction", "```python\n[1, 2]\n```", "[1, 2]"),
    ("deduction", "The answer is 'ab'", "'ab'"), ("math", "Answer: 12", "12"), ("math", "3 + 4 = 7", "7"),
    ("abduction", "4", "4"), ("abduction", "f(4)", "4"), ("abduction", "f(4) == 7", "4"), ("abduction", "The input is 4.", "4"), ("abduction", "x = 4", "x = 4"),  # f(x = 4): a keyword argument
   
    ("induction", "```python\ndef f(x):\n    return x + 1\n```", "def f(x):\n    return x + 1"),
    ("induction", "Here it is:\ndef f(x):\n    return x", "def f(x):\n    return x"),
])
def test_answers_are_read_from_assistant_replies(kind, reply, answer):
    assert extract_answer(kind, reply) == answer


@pytest.mark.parametrize(("kind", "reply"), [("deduction", ""), ("deduction", "seven"), ("math", "I don't know"),
                                             ("induction", "return x + 1")])
def test_replies_without_an_answer_are_format_errors(kind, reply):
    with pytest.raises(FormatError):
        extract_answer(kind, reply)


def test_proposals_round_trip_through_the_proposer_prompt_and_a_fenced_reply():
    prompt = proposer_prompt("deduction", [ADD])
    assert render_proposal(ADD) in prompt[1]["content"] and ">>> f(" in prompt[1]["content"]
    parsed = parse_proposal("deduction", f"```python\n{render_proposal(ADD)}\n```")
    assert (parsed.program, parsed.inputs) == (ADD.program, ADD.inputs)


def test_rollouts_stop_at_stop_ids_and_match_with_and_without_cache():
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, seed=0, quantized=True)
    prompts = [solver_prompt(ADD), solver_prompt(Task("math", "", ("1 + 2",), ("3",))), [{"role": "user", "content": "x" * 400}]]
    agent = Agent(model, tokenizer, max_prompt_tokens=200)
    assert agent.stop_ids == tokenizer.stop_ids and tokenizer.eos_id in agent.stop_ids
    free = agent.sample(prompts, 8, temperature=0.0)
    assert free[2].tokens == () and not free[2].finished  # over the prompt budget: not asked
    assert [c.tokens for c in free] == [c.tokens for c in Agent(model, tokenizer, max_prompt_tokens=200,
                                                                  use_cache=False).sample(prompts, 8, temperature=0.0)]
    # A random model rarely says its end-of-turn: make its third greedy token the stop id.
    agent.stop_ids = (free[0].tokens[2],)
    stopped = agent.sample(prompts, 8, temperature=0.0)[0]
    end = free[0].tokens.index(free[0].tokens[2]) + 1
    assert stopped.finished and stopped.tokens == free[0].tokens[:end] and len(stopped.logprobs) == end
    assert stopped.text == tokenizer.decode(free[0].tokens[: end - 1], skip_special=True)
