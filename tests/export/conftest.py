"""A tiny ternary model, its tokenizer and its exported bundle, shared by the export tests."""

from pathlib import Path

import pytest
import torch

from bitzero.export.exporter import HeldOut, export_bundle, held_out_inputs
from bitzero.model import BitZeroLM, ModelConfig
from bitzero.text import Tokenizer

TOLERANCES = {"exact": 0.05, "nbits": 0.1}
CONVERSATIONS = [
    [
        {"role": "user", "content": f"hello number {i}, how are you today?"},
        {"role": "assistant", "content": "fine, thanks! and you?"},
    ]
    for i in range(4)
]


def tiny_model(tokenizer: Tokenizer, ffn_type: str = "squared_relu", seed: int = 0) -> BitZeroLM:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, n_layer=2, n_head=4, n_embd=64, block_size=96, ffn_type=ffn_type
    )
    return BitZeroLM(config).eval()


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Tokenizer.default().save(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def model(tokenizer_file: Path) -> BitZeroLM:
    torch.set_num_threads(1)
    return tiny_model(Tokenizer.load(tokenizer_file))


@pytest.fixture(scope="session")
def held_out(tokenizer_file: Path) -> HeldOut:
    return held_out_inputs(CONVERSATIONS, Tokenizer.load(tokenizer_file), 96, 4)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, model: BitZeroLM, tokenizer_file: Path, held_out: HeldOut) -> Path:
    folder = tmp_path_factory.mktemp("export") / "bundle"
    export_bundle(
        model, tokenizer_file, folder, held_out, tolerances=TOLERANCES, greedy_tokens=16,
        source={"mlflow_run_id": "run-123"},
    )
    return folder
