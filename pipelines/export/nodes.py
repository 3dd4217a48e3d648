"""Nodes of the export stage: each one loads, calls the library and returns."""

from pathlib import Path
from typing import Any

import torch

from bitzero.companion.emotion import EMOTION_FILE
from bitzero.data.records import Record
from bitzero.export.exporter import export_bundle, held_out_inputs
from bitzero.export.registry import register_bundle, source_run_id
from bitzero.model import load_checkpoint, read_checkpoint_config
from bitzero.text import Tokenizer
from pipelines.tracking import report_metrics


def export_model(checkpoint_dir: str, emotion_classifier: str, validation: list[Record], params: dict[str, Any]) -> dict[str, Any]:
    """Pack, build the ONNX variants, measure parity on held-out conversations, write the bundle
    (with the emotion classifier, so a service that fetches the bundle has all it needs)."""
    torch.set_num_threads(params["torch_threads"])
    model = load_checkpoint(checkpoint_dir)
    _, metadata = read_checkpoint_config(checkpoint_dir)
    tokenizer_path = Path(checkpoint_dir) / "tokenizer.json"
    conversations = [r["conversation"] for r in validation if r.get("conversation")]
    held_out = held_out_inputs(
        conversations, Tokenizer.load(tokenizer_path), model.config.block_size, params["held_out_conversations"]
    )
    source = {"checkpoint": checkpoint_dir, "mlflow_run_id": source_run_id(metadata, params["source_stage"])}
    return export_bundle(
        model,
        tokenizer_path,
        params["bundle_dir"],
        held_out,
        variants=params["variants"],
        tolerances=params["tolerances"],
        greedy_tokens=params["greedy_tokens"],
        source=source,
        extras={EMOTION_FILE: emotion_classifier},
    )


def register(manifest: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The bundle as a new version of the registered model (MLflow 3 LoggedModel + registry)."""
    tags = {"bitzero_model_id": manifest["model_id"], "source_run_id": str(manifest["source"]["mlflow_run_id"])}
    return register_bundle(params["bundle_dir"], params["registered_model_name"], tags)


def report(manifest: dict[str, Any], registration: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Headline figures (DVC metrics) and the same numbers as MLflow metrics."""
    sizes, parity = manifest["sizes"], manifest["parity"]
    default = manifest["default_variant"]
    summary: dict[str, Any] = {
        "model_id": manifest["model_id"],
        "bits_per_weight_ternary": sizes[default]["bits_per_weight_ternary"],
        "bits_per_weight_model": sizes[default]["bits_per_weight_model"],
        "packed_bits_per_weight_ternary": sizes["packed"]["bits_per_weight_ternary"],
        "model_bytes": sizes[default]["bytes"],
        "fp32_model_bytes": sizes["fp32_model_bytes"],
        "fp32_size_ratio": sizes[default]["fp32_ratio"],
        "parameters": sizes["parameters"],
        "provider": parity[default]["provider"],
        "variants": {v: {"bytes": sizes[v]["bytes"], **_figures(parity[v])} for v in parity},
        "tolerances": manifest["parity_tolerance"],
        "source_run_id": manifest["source"]["mlflow_run_id"],
        "registered_model": registration,
    }
    for variant in parity:
        summary[f"parity_max_rel_error_{variant}"] = parity[variant]["max_rel_error"]
        summary[f"greedy_agreement_{variant}"] = parity[variant]["greedy_agreement"]
    return summary, report_metrics(summary)


def _figures(parity: dict[str, Any]) -> dict[str, float]:
    keys = ("max_abs_error", "max_rel_error", "median_rel_error", "top1_agreement", "greedy_identical", "greedy_agreement",
            "greedy_divergence_margin")
    return {key: parity[key] for key in keys}
