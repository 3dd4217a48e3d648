"""Each variant against PyTorch, within the tolerance the export states."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bitzero.export.bundle import MANIFEST
from bitzero.export.convert import pack_model
from bitzero.export.exporter import ExportError, export_bundle
from bitzero.export.graph import build_graph
from bitzero.export.parity import compare, torch_reference
from bitzero.export.runtime import BundleRuntime
from tests.export.conftest import TOLERANCES


@pytest.mark.parametrize("variant", ["exact", "nbits"])
def test_variant_logits_within_tolerance(bundle: Path, model: torch.nn.Module, held_out, variant: str) -> None:
    reference = torch_reference(model, held_out.sequences, held_out.prompts, 12, stop_ids=(3, 7))
    figures = compare(BundleRuntime.load(bundle, variant), reference, 12)
    assert figures["max_rel_error"] <= TOLERANCES[variant]
    assert figures["top1_agreement"] >= (1.0 if variant == "exact" else 0.9)
    assert figures["greedy_tokens"] >= len(held_out.prompts)
    if variant == "exact":
        assert figures["greedy_identical"] == 1.0


def test_exact_variant_greedy_generations_match_pytorch(bundle: Path) -> None:
    parity = json.loads((bundle / MANIFEST).read_text())["parity"]
    assert parity["exact"]["greedy_identical"] == 1.0
    assert parity["exact"]["greedy_tokens"] > 0
    assert 0.0 <= parity["nbits"]["greedy_agreement"] <= 1.0


def test_manifest_records_sizes_source_and_bits(bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    sizes = manifest["sizes"]
    assert sizes["nbits"]["bits_per_weight_ternary"] <= 2.5  # K=64 here: block 64, one fp32 scale each
    assert sizes["nbits"]["bytes"] < sizes["exact"]["bytes"] < sizes["fp32_model_bytes"] * 2
    assert manifest["source"] == {"mlflow_run_id": "run-123"}
    assert (bundle / "nbits" / "model.onnx").stat().st_size == sizes["nbits"]["bytes"]


@pytest.mark.parametrize("variant", ["exact", "nbits", "fp32"])
def test_graphs_pass_the_full_onnx_check(model: torch.nn.Module, variant: str) -> None:
    onnx.checker.check_model(build_graph(pack_model(model), variant), full_check=True)


def test_exact_graph_matches_pytorch_fake_quant_on_random_ids(model: torch.nn.Module) -> None:
    import onnxruntime as ort

    graph = build_graph(pack_model(model), "exact")
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(1, 12))
    feeds = {i.name: np.zeros((1, 4, 0, 16), np.float32) for i in session.get_inputs()[1:]}
    got = session.run(["logits"], {"input_ids": ids, **feeds})[0]
    with torch.no_grad():
        reference = model(torch.from_numpy(ids))[0].numpy()
    assert np.abs(got - reference).max() <= 1e-5 * np.abs(reference).max() + 1e-6


def test_out_of_tolerance_export_fails_and_keeps_the_old_bundle(
    tmp_path: Path, model: torch.nn.Module, tokenizer_file: Path, held_out
) -> None:
    folder = tmp_path / "bundle"
    export_bundle(model, tokenizer_file, folder, held_out, variants=["exact"], tolerances=TOLERANCES, greedy_tokens=2)
    before = (folder / MANIFEST).read_text()
    with pytest.raises(ExportError, match="nbits export is off"):
        export_bundle(model, tokenizer_file, folder, held_out, variants=["nbits"], tolerances={"nbits": 1e-9}, greedy_tokens=2)
    assert (folder / MANIFEST).read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
