"""The other teacher families export: Qwen2's q/k/v biases, Qwen3's per-head q/k norms (and its own
head size), Llama 3's scaled RoPE tables, each held to PyTorch by the layer-wise criterion, as
teacher and as ternary student."""

from pathlib import Path

import pytest
import torch

from bitzero.export.convert import pack_model
from bitzero.export.exporter import TOLERANCES, HeldOut, export_bundle
from bitzero.export.graph import build_graph
from bitzero.export.layerwise import graph_reference, layerwise_parity
from bitzero.model import BitZeroLM
from bitzero.model.pretrained import import_pretrained, ternary_student
from bitzero.serving.genai import AVAILABLE as genai_available
from bitzero.serving.runtime import BundleRuntime
from tests.tiny import HF_FAMILIES, tiny_hf_checkpoint

# Past Llama 3's original context of 32 (tiny_hf_checkpoint), so its scaled frequencies are used.
SEQUENCES = [list(range(5, 75)), list(range(40, 100))]


@pytest.fixture(scope="module", params=[f for f in HF_FAMILIES if f != "llama"])
def teacher(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> BitZeroLM:
    torch.set_num_threads(1)
    folder = tiny_hf_checkpoint(tmp_path_factory.mktemp("hf") / request.param, family=request.param)
    return import_pretrained(str(folder))[0]


@pytest.mark.parametrize("variant", ["int4", "fp32", "nbits", "exact"])
def test_each_family_exports_within_the_layerwise_tolerance(teacher: BitZeroLM, variant: str) -> None:
    # The student as BitDistill converts one: SubLN before o_proj spans the heads, not the model width.
    student = variant in ("nbits", "exact")
    model = ternary_student(teacher, critical_ratio=0.1, sub_norm=True).eval() if student else teacher
    figures = layerwise_parity(build_graph(pack_model(model), variant), graph_reference(model, variant), SEQUENCES)
    assert figures["max_rel_error"] <= TOLERANCES[variant] / 2, figures["worst"]


def test_a_student_with_its_own_head_size_serves_from_its_bundle(
    tmp_path: Path, tokenizer_file: Path, held_out: HeldOut
) -> None:
    """Qwen3's heads are 32 wide in a 64-wide model: the KV cache, genai_config and the graph agree."""
    teacher = import_pretrained(str(tiny_hf_checkpoint(tmp_path / "hf", family="qwen3")))[0]
    student = ternary_student(teacher, critical_ratio=0.1).eval()
    manifest = export_bundle(student, tokenizer_file, tmp_path / "bundle", held_out, greedy_tokens=16)
    assert manifest["config"]["head_dim"] == 32
    runtime = BundleRuntime.load(tmp_path / "bundle", "exact")
    assert runtime.engine == ("genai" if genai_available else "onnxruntime")
    prompt = runtime.tokenizer.encode_chat([{"role": "user", "content": "hello, how are you?"}], add_generation_prompt=True)
    kwargs = {"max_tokens": 16}  # greedy
    assert list(runtime.token_ids(prompt, **kwargs)) == list(runtime.token_ids(prompt, use_cache=False, **kwargs))
