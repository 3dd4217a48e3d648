"""Bundles of both kinds: parity against PyTorch within the stated tolerance, sizes, held-out NLL."""

import json
from pathlib import Path

import pytest
import torch

from bitzero.export.exporter import ExportError, HeldOut, export_bundle
from bitzero.export.graph import variants_for
from bitzero.export.parity import compare, torch_reference
from bitzero.model import BitZeroLM
from bitzero.serving.bundle import MANIFEST, PACKED
from bitzero.serving.runtime import BundleRuntime
from tests.export.conftest import END_TO_END, TINY_INT4_BITS


@pytest.mark.parametrize("variant", list(variants_for({"quantized": True})))
def test_student_variants_within_tolerance(bundle: Path, student: BitZeroLM, held_out: HeldOut, variant: str) -> None:
    runtime = BundleRuntime.load(bundle, variant)
    reference = torch_reference(student, held_out.sequences, held_out.prompts, 12, runtime.tokenizer.stop_ids)
    figures = compare(runtime, reference, 12)
    assert figures["max_rel_error"] <= END_TO_END[variant]
    assert figures["top1_agreement"] >= (1.0 if variant == "exact" else 0.9)
    assert figures["greedy_tokens"] >= len(held_out.prompts)
    if variant == "exact":
        assert figures["greedy_identical"] == 1.0


def test_manifests_record_parity_for_every_variant(bundle: Path, teacher_bundle: Path) -> None:
    student = json.loads((bundle / MANIFEST).read_text())
    teacher = json.loads((teacher_bundle / MANIFEST).read_text())
    assert student["kind"] == "student" and set(student["parity"]) == set(variants_for(student["config"]))
    assert teacher["kind"] == "teacher" and set(teacher["parity"]) == {"int4", "fp32"}
    assert student["parity"]["exact"]["greedy_identical"] == teacher["parity"]["fp32"]["greedy_identical"] == 1.0
    assert teacher["parity"]["fp32"]["max_rel_error"] <= 1e-5
    for manifest in (student, teacher):
        for variant, figures in manifest["parity"].items():
            assert figures["layerwise"]["max_rel_error"] <= manifest["parity_tolerance"][variant]
    assert 0.0 < teacher["parity"]["int4"]["top1_agreement"] <= 1.0


def test_manifest_records_sizes_source_and_bits(bundle: Path, teacher_bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    sizes = manifest["sizes"]
    assert 2.0 < sizes["nbits"]["bits_per_weight_linear"] <= 2.75  # K=64/96: one fp32 scale per block
    exact = sizes["exact"]["bits_per_weight_linear"]
    assert 2 + 32 / 96 <= exact <= 2 + 32 / 64  # 2-bit codes + an fp32 scale a row (K = 64 or 96)
    if "ternary" in sizes:  # the kernel's layout pads K to a multiple of 64: K=96 to 128
        assert exact < sizes["ternary"]["bits_per_weight_linear"] < 2 * 128 / 96 + 32 / 64
    assert sizes["nbits"]["bytes"] < sizes["exact"]["bytes"] < sizes["fp32_model_bytes"]
    assert manifest["source"] == {"mlflow_run_id": "run-123"} and (bundle / PACKED).is_file()
    assert (bundle / "nbits" / "model.onnx").stat().st_size == sizes["nbits"]["bytes"]
    teacher = json.loads((teacher_bundle / MANIFEST).read_text())
    assert teacher["sizes"]["int4"]["bits_per_weight_linear"] == pytest.approx(TINY_INT4_BITS)
    assert teacher["sizes"]["int4"]["bytes"] < teacher["sizes"]["fp32"]["bytes"] / 2
    assert "packed" not in teacher and not (teacher_bundle / PACKED).exists()


def test_held_out_nll_is_pytorchs_on_the_assistant_tokens(teacher_bundle: Path, teacher: BitZeroLM, held_out: HeldOut) -> None:
    """Through the fp32 graph the bundle's NLL is PyTorch's cross-entropy on the masked targets."""
    from bitzero.export.heldout import assistant_nll

    figures = assistant_nll(BundleRuntime.load(teacher_bundle, "fp32"), held_out.scored)
    total = count = 0.0
    with torch.no_grad():
        for item in held_out.scored:
            ids = torch.tensor([item.ids])
            targets = torch.where(torch.tensor(item.mask[1:]), ids[0, 1:], -100)
            logits, _ = teacher(ids[:, :-1])
            total += float(torch.nn.functional.cross_entropy(logits[0], targets, reduction="sum"))
            count += int((targets != -100).sum())
    assert figures["overall"] == pytest.approx(total / count, rel=1e-5)
    assert set(figures["per_source"]) == {"seed", "persona"} and figures["tokens"] == count
    manifest = json.loads((teacher_bundle / MANIFEST).read_text())
    assert manifest["held_out_nll"]["variant"] == "int4" and manifest["held_out_nll"]["tokens"] == count


def test_out_of_tolerance_export_fails_and_keeps_the_old_bundle(
    tmp_path: Path, student: BitZeroLM, tokenizer_file: Path, held_out: HeldOut
) -> None:
    folder = tmp_path / "bundle"
    export_bundle(student, tokenizer_file, folder, held_out, variants=["exact"], greedy_tokens=2)
    before = (folder / MANIFEST).read_text()
    with pytest.raises(ExportError, match="nbits export's .* differs from PyTorch's"):
        export_bundle(student, tokenizer_file, folder, held_out, variants=["nbits"], tolerances={"nbits": 1e-9}, greedy_tokens=2)
    assert (folder / MANIFEST).read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_variant_of_the_other_kind_is_refused(tmp_path: Path, teacher: BitZeroLM, tokenizer_file: Path, held_out: HeldOut) -> None:
    with pytest.raises(ValueError, match="full-precision model exports as one of"):
        export_bundle(teacher, tokenizer_file, tmp_path / "b", held_out, variants=["nbits"], greedy_tokens=2)
    assert not (tmp_path / "b").exists()
