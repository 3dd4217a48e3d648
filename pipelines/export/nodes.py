"""Nodes of the export stage: each one loads, calls the library and returns."""

import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from bitzero.companion.emotion import emotion_files
from bitzero.data.records import Record
from bitzero.export.exporter import ExportError, export_bundle, held_out_inputs
from bitzero.export.lineage import check_checkpoint
from bitzero.export.promotion import CHAMPION, STUDENT, TEACHER, decide, left_out, write_champion
from bitzero.export.registry import register_bundle, set_alias, source_run_id
from bitzero.model import load_checkpoint, read_checkpoint_config
from bitzero.service.rehearsal import evaluate_bundle
from bitzero.serving.bundle import write_manifest
from bitzero.text import Tokenizer
from pipelines.tracking import report_metrics

log = logging.getLogger(__name__)


def pick_checkpoints(lineage: dict[str, Any], trained: str, student: str, teacher: str) -> tuple[str, str]:
    """The checkpoints of the student and the teacher bundle: the served lineage's from self-play and
    personalize (``trained``), so what they learned reaches the served bundle; the other one as it
    came (the distilled student, the imported teacher)."""
    _, metadata = read_checkpoint_config(trained)
    kind = check_checkpoint(lineage, metadata, f"the personalized checkpoint {trained}")
    log.info("the %s bundle is built from the trained %s lineage (%s)", kind, kind, trained)
    return (trained, teacher) if kind == STUDENT else (student, trained)


def _export(kind: str, checkpoint_dir: str, emotion_classifier: str, embedder: str, validation: list[Record],
            params: dict[str, Any]) -> dict[str, Any]:
    """One checkpoint as a bundle in ``bundles_dir/kind``, with the emotion classifier inside (so a
    service that fetches either bundle has all it needs), parity, held-out NLL and the conversation
    eval (through the service's own prompt path and default decoding) measured."""
    torch.set_num_threads(params["torch_threads"])
    settings = params[kind]
    model = load_checkpoint(checkpoint_dir)
    _, metadata = read_checkpoint_config(checkpoint_dir)
    tokenizer_path = Path(checkpoint_dir) / "tokenizer.json"
    held_out = held_out_inputs(validation, Tokenizer.load(tokenizer_path), params["parity_max_tokens"],
                               params["parity_conversations"], params["nll_conversations"])
    source = {"checkpoint": checkpoint_dir, "mlflow_run_id": source_run_id(metadata, settings["source_stage"])}
    bundle_dir = Path(params["bundles_dir"]) / kind
    manifest = export_bundle(
        model, tokenizer_path, bundle_dir, held_out, variants=settings["variants"],
        tolerances=settings.get("tolerances"), greedy_tokens=params["greedy_tokens"], source=source,
        extras=emotion_files(emotion_classifier),
    )
    result = evaluate_bundle(bundle_dir, embedder, limits=params["conversation_eval"], threads=params["torch_threads"])
    manifest["conversation_eval"] = {key: result[key] for key in ("figures", "passed", "reason", "decoding")}
    write_manifest(bundle_dir, manifest)  # model_id names the files, not the manifest: unchanged
    log.info("conversation eval of the %s: %s", kind, result["reason"])
    return manifest


def export_student(checkpoint_dir: str, emotion_classifier: str, embedder: str, validation: list[Record],
                   params: dict[str, Any]) -> dict[str, Any]:
    """The ternary student: ternary (our kernel, where built), nbits and exact graphs. A student that fails its checks
    never keeps the user from a companion: its earlier bundle goes (it would be served by name),
    and the manifest says why it was left out, with the figures measured up to the failure."""
    try:
        return _export(STUDENT, checkpoint_dir, emotion_classifier, embedder, validation, params)
    except ExportError as error:
        shutil.rmtree(Path(params["bundles_dir"]) / STUDENT, ignore_errors=True)
        log.warning("The student was left out, the teacher will be served: %s", error)
        return {**error.manifest, "kind": STUDENT, "failure": str(error)}


def export_teacher(checkpoint_dir: str, emotion_classifier: str, embedder: str, validation: list[Record],
                   params: dict[str, Any]) -> dict[str, Any]:
    """The full-precision teacher as 4-bit weights: the reference the student has to come close to."""
    return _export(TEACHER, checkpoint_dir, emotion_classifier, embedder, validation, params)


def promote(student: dict[str, Any], teacher: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Register both bundles as versions of one registered model, move its `champion` alias by the
    gate, and write champion.json beside the bundles (for a service without MLflow)."""
    teacher_nll = teacher["held_out_nll"]["overall"]
    if "failure" in student:
        decision = left_out(student["failure"], teacher_nll, params["gate_factor"])
    else:
        # A bundle exported outside this stage (by export_bundle alone) carries no eval to judge by.
        verdicts = {kind: (m["conversation_eval"]["passed"], m["conversation_eval"]["reason"])
                    for kind, m in ((STUDENT, student), (TEACHER, teacher)) if "conversation_eval" in m}
        decision = decide(student["held_out_nll"]["overall"], teacher_nll, params["gate_factor"], verdicts)
    manifests = {kind: m for kind, m in ((STUDENT, student), (TEACHER, teacher)) if kind in decision.bundles}
    name = params["registered_model_name"]
    registered = {
        kind: register_bundle(Path(params["bundles_dir"]) / kind, name, {
            "bitzero_model_id": m["model_id"], "kind": kind, "source_run_id": str(m["source"]["mlflow_run_id"]),
        })
        for kind, m in manifests.items()
    }
    set_alias(name, registered[decision.champion]["version"], CHAMPION)
    path = write_champion(params["bundles_dir"], decision, {k: m["model_id"] for k, m in manifests.items()},
                          registered[decision.champion])
    return {"champion": decision.champion, "reason": decision.reason, "gate_factor": decision.gate_factor,
            "champion_file": str(path), "registered": registered}


def report(student: dict[str, Any], teacher: dict[str, Any], promotion: dict[str, Any], lineage: dict[str, Any]
           ) -> tuple[dict[str, Any], dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Headline figures (DVC metrics) and the same numbers as MLflow metrics; a student left out is
    reported with its failure and the parity figures measured before it. The trained lineage and
    whether the gate served it: when not, the served bundle lacks self-play's and users' learning."""
    agrees = promotion["champion"] == lineage["served"]
    if not agrees:
        log.warning("The gate serves the %s, but self-play and personalize trained the %s (%s)",
                    promotion["champion"], lineage["served"], lineage["reason"])
    bundles = {kind: _bundle_figures(m, promotion["registered"][kind]) if kind in promotion["registered"]
               else _failure_figures(m) for kind, m in ((STUDENT, student), (TEACHER, teacher))}
    summary: dict[str, Any] = {
        "champion": promotion["champion"],
        "reason": promotion["reason"],
        "gate_factor": promotion["gate_factor"],
        "student_nll": student["held_out_nll"]["overall"] if STUDENT in promotion["registered"] else None,
        "teacher_nll": teacher["held_out_nll"]["overall"],
        "student_bytes": bundles[STUDENT].get("bytes"),
        "teacher_bytes": bundles[TEACHER]["bytes"],
        "provider": teacher["parity"][teacher["default_variant"]]["provider"],
        "trained_lineage": lineage["served"],
        "champion_is_trained_lineage": agrees,
        "bundles": bundles,
    }
    evaluated = [(kind, m["conversation_eval"]["figures"]) for kind, m in ((STUDENT, student), (TEACHER, teacher))
                 if "conversation_eval" in m]
    plot = [{"bundle": kind, **{k: v for k, v in figures.items() if k.endswith("_rate")}} for kind, figures in evaluated]
    return summary, report_metrics(summary), plot


_PARITY_KEYS = ("max_abs_error", "max_rel_error", "p99_rel_error", "median_rel_error", "top1_agreement",
                "greedy_identical", "greedy_agreement", "greedy_divergence_margin")


def _parity_figures(figures: dict[str, Any]) -> dict[str, Any]:
    """End-to-end figures (reported) and the layer-wise ones the export is gated on (worst stage)."""
    layerwise = figures["layerwise"]
    return {**{k: figures[k] for k in _PARITY_KEYS},
            "layerwise_max_rel_error": layerwise["max_rel_error"], "layerwise_worst": layerwise["worst"]}


def _failure_figures(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"status": "left out", "failure": manifest["failure"],
            "variants": {v: _parity_figures(f) for v, f in manifest.get("parity", {}).items() if "layerwise" in f},
            "tolerances": manifest.get("parity_tolerance", {})}


def _eval_figures(manifest: dict[str, Any]) -> dict[str, Any]:
    """The conversation eval's figures, verdict and decoding (nothing for a bundle exported without it)."""
    if "conversation_eval" not in manifest:
        return {}
    evaluated = manifest["conversation_eval"]
    return {"conversation_eval": {**evaluated["figures"], "passed": evaluated["passed"], "reason": evaluated["reason"]},
            "decoding": evaluated["decoding"]}


def _bundle_figures(manifest: dict[str, Any], registration: dict[str, Any]) -> dict[str, Any]:
    sizes, parity, default = manifest["sizes"], manifest["parity"], manifest["default_variant"]
    return {
        "status": "exported",
        "model_id": manifest["model_id"],
        "default_variant": default,
        "bytes": sizes[default]["bytes"],
        "parameters": sizes["parameters"],
        "fp32_model_bytes": sizes["fp32_model_bytes"],
        "held_out_nll": manifest["held_out_nll"],
        **_eval_figures(manifest),
        "variants": {v: {"bytes": sizes[v]["bytes"], "bits_per_weight_model": sizes[v]["bits_per_weight_model"],
                         "bits_per_weight_linear": sizes[v]["bits_per_weight_linear"],
                         **_parity_figures(parity[v])} for v in parity},
        "tolerances": manifest["parity_tolerance"],
        "source_run_id": manifest["source"]["mlflow_run_id"],
        "registered_model": registration,
    }
