"""Self-play under torchrun (two CPU processes, gloo): data-parallel, and every rank stays in step.

One torchrun launch runs both checks, so the start-up is paid once:
* a PPO update on a global rollout list split between two ranks equals one process taking the
  doubled minibatch;
* the whole stage (warm-up, both arms, evaluation) leaves the same model, buffer, levels and
  report on both ranks, with both ranks' proposals in it.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from bitzero.model import BitZeroLM, ModelConfig
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.loop import make_trainer
from bitzero.selfplay.ppo import PPOLoss, Sample, ppo_update

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import sys
import torch
from bitzero.model import BitZeroLM, ModelConfig
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.experiment import run_experiment
from bitzero.selfplay.loop import make_trainer
from bitzero.selfplay.ppo import PPOLoss, ppo_update
from bitzero.train import init_distributed
sys.path[:0] = [sys.argv[3], sys.argv[3] + "/../.."]  # this test's folder, and the repository for tests.tiny
from test_distributed import PPO_MINIBATCH, micro_config, ppo_model, ppo_samples
from tests.tiny import tiny_model, tiny_tokenizer

ctx = init_distributed("cpu")
torch.set_num_threads(1)
model = ppo_model()
trainer = make_trainer(model, SelfPlayConfig(device="cpu"), 1e-2, ctx)
trainer.loss_fn = PPOLoss()
stats = ppo_update(trainer, ppo_samples(), epochs=2, minibatch_size=PPO_MINIBATCH // 2, seed=5)

tokenizer = tiny_tokenizer()
outcome = run_experiment(tiny_model(tokenizer, quantized=True), tokenizer, micro_config(sys.argv[2]),
                         reference=(tiny_model(tokenizer, seed=1), tokenizer))
report = {k: v for k, v in outcome.report.items() if k not in ("stage_seconds", "ppo_ablation", "warmup")}
torch.save({"ppo": model.state_dict(), "ppo_stats": stats, "model": outcome.model.state_dict(),
            "buffer": outcome.buffer, "heldout": outcome.heldout, "report": report},
           f"{sys.argv[1]}/rank{ctx.rank}.pt")
'''

PPO_MINIBATCH = 4


def ppo_model() -> BitZeroLM:
    torch.manual_seed(0)
    return BitZeroLM(ModelConfig(vocab_size=16, n_layer=1, n_head=2, n_embd=32, block_size=32))


def ppo_samples() -> list[Sample]:
    """Ten rollouts of different lengths and advantages (the last global minibatch is short)."""
    return [
        Sample(tuple(range(1, 2 + i % 3)), tuple((i * 5 + j) % 16 for j in range(2 + i % 4)),
               tuple(-2.0 - 0.1 * j for j in range(2 + i % 4)), (-1.0) ** i * (0.5 + 0.1 * i))
        for i in range(10)
    ]


def micro_config(config_file: str) -> SelfPlayConfig:
    params = yaml.safe_load(Path(config_file).read_text())["selfplay"]
    params.pop("chat_guard")  # the stage's own setting, not the experiment's
    return SelfPlayConfig.from_dict({**params, "arm_seconds": 60, "max_iterations": 2})


def test_two_ranks_self_play_in_step_and_split_the_ppo_batch(tmp_path: Path) -> None:
    script = tmp_path / "selfplay_ddp.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
         str(tmp_path), str(REPO / "conf" / "test" / "parameters_selfplay.yml"), str(Path(__file__).parent)],
        env={**env, "OMP_NUM_THREADS": "1"}, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]

    # PPO: two ranks with minibatch m each == one process with 2m (the same global minibatches).
    single = ppo_model()
    trainer = make_trainer(single, SelfPlayConfig(device="cpu"), 1e-2)
    trainer.loss_fn = PPOLoss()
    ppo_update(trainer, ppo_samples(), epochs=2, minibatch_size=PPO_MINIBATCH, seed=5)
    for rank in ranks:
        assert rank["ppo_stats"]["updates"] == 6  # 2 epochs x (4 + 4 + 2 rows), none dropped
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ranks[0]["ppo"][name], value, rtol=1e-4, atol=1e-5, msg=name)

    # The stage: both ranks hold the same outcome.
    first, second = ranks
    for name, value in first["model"].items():
        assert torch.equal(value, second["model"][name]), name
    assert first["buffer"] == second["buffer"] and first["heldout"] == second["heldout"]
    assert first["report"] == second["report"]
    report = first["report"]
    assert report["world_size"] == 2
    # Two iterations of 4 proposals on each of two ranks, all counted.
    assert report["proposals"]["made"] == 2 * 4 * 2
    assert report["heldout_after"]["overall"]["tasks"] == report["heldout_tasks"] == len(first["heldout"])
