"""Tiny student and teacher models, held-out records and their exported bundles, shared by the export tests."""

from pathlib import Path

import pytest
import torch

from bitzero.export.exporter import HeldOut, export_bundle, held_out_inputs
from bitzero.kernels import library_path
from bitzero.model import BitZeroLM
from bitzero.text import Tokenizer
from tests.tiny import tiny_model, tiny_tokenizer

# Stored bits of a tiny teacher's int4 projection weight. On Int4MatMul (where the kernels are built):
# 16 bytes of codes and an fp16 scale and min a block of 32, 5 bits, with down_proj's K=96 padded to
# 4 blocks (64 x 96 of the 24576 + 6144 weights a layer); on MatMulNBits, fp32 scales and zero points.
TINY_INT4_BITS = (5 * 24576 + 5 * 128 / 96 * 6144) / (24576 + 6144) if library_path() else 6.0
# End-to-end relative logit error of the tiny two-block random models here (too shallow for an int8
# flip to cascade; the export itself is gated layer-wise, exporter.TOLERANCES). int4: random
# N(0, 0.08) weights are the worst case for 4-bit blocks (no outliers to spare, every weight
# rounded by up to 1/30 of its block's range).
END_TO_END = {"exact": 0.05, "ternary": 0.15, "nbits": 0.15, "int4": 0.6, "fp32": 1e-5}
RECORDS = [
    {"id": f"v{i}", "source": "seed" if i % 2 else "persona",
     "conversation": [{"role": "user", "content": f"hello number {i}, how are you today?"},
                      {"role": "assistant", "content": "I am fine, thanks! and you?"}]}
    for i in range(4)
]


def visible(model: BitZeroLM, seed: int = 0) -> BitZeroLM:
    """Weights at the scale of a trained model (N(0, 0.08)), so rounding and sampling change something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.08)
    return model.eval()


def tiny_student(seed: int = 0, **overrides: object) -> BitZeroLM:
    return visible(tiny_model(tiny_tokenizer(), seed, quantized=True, critical_ratio=0.1, **overrides), seed)


def tiny_teacher(seed: int = 0, **overrides: object) -> BitZeroLM:
    return visible(tiny_model(tiny_tokenizer(), seed, **overrides), seed)


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tokenizer().save(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def student() -> BitZeroLM:
    torch.set_num_threads(1)
    return tiny_student()


@pytest.fixture(scope="session")
def teacher() -> BitZeroLM:
    return tiny_teacher(seed=1)


@pytest.fixture(scope="session")
def held_out(tokenizer_file: Path) -> HeldOut:
    return held_out_inputs(RECORDS, Tokenizer.load(tokenizer_file), 96, parity_limit=3, nll_limit=4)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, student: BitZeroLM, tokenizer_file: Path, held_out: HeldOut) -> Path:
    """The student's bundle (nbits, exact)."""
    folder = tmp_path_factory.mktemp("export") / "student"
    export_bundle(student, tokenizer_file, folder, held_out, greedy_tokens=16,
                  source={"mlflow_run_id": "run-123"})
    return folder


@pytest.fixture(scope="session")
def teacher_bundle(tmp_path_factory: pytest.TempPathFactory, teacher: BitZeroLM, tokenizer_file: Path, held_out: HeldOut) -> Path:
    """The teacher's bundle (int4, fp32)."""
    folder = tmp_path_factory.mktemp("export") / "teacher"
    export_bundle(teacher, tokenizer_file, folder, held_out, greedy_tokens=16)
    return folder
