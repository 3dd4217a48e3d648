"""Checkpoint -> bundle: pack, build one ONNX graph per variant, measure parity, write bitzero.json.

The bundle is assembled in a staging folder beside its destination and swapped in by rename, so
the service never sees a bundle half written or one whose manifest describes other files.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from bitzero.export.bundle import ONNX_FILE, PACKED, TOKENIZER, file_entry, model_id, write_manifest
from bitzero.export.convert import pack_model
from bitzero.export.graph import build_graph, nbits_tensors
from bitzero.export.packing import PackedModel, save_packed
from bitzero.export.parity import compare, torch_reference
from bitzero.export.runtime import CPU, BundleRuntime
from bitzero.files import staged_folder
from bitzero.model import BitZeroLM
from bitzero.text import Tokenizer


class ExportError(RuntimeError):
    """The exported model does not match the PyTorch model within the stated tolerance."""


@dataclass(frozen=True)
class HeldOut:
    """Held-out token sequences (logit parity) and chat prompts (greedy parity)."""

    sequences: list[list[int]]
    prompts: list[list[int]]


def held_out_inputs(
    conversations: Sequence[Sequence[Mapping[str, str]]], tokenizer: Tokenizer, block_size: int, limit: int
) -> HeldOut:
    """Whole conversations (cut to the context) and prompts up to their last assistant turn."""
    sequences, prompts = [], []
    for turns in list(conversations)[:limit]:
        ids = tokenizer.encode_chat(turns)
        sequences.append(ids[:block_size])
        last = max((i for i, t in enumerate(turns) if t.get("role") == "assistant"), default=len(turns))
        prompt = tokenizer.encode_chat(turns[:last], add_generation_prompt=True)
        prompts.append(prompt[-(block_size // 2) :])
    if not sequences:
        raise ExportError("no held-out conversations to measure parity on")
    return HeldOut(sequences, prompts)


def nbits_bits_per_weight(packed: PackedModel) -> float:
    """Stored bits per ternary weight in the nbits graph: 2-bit codes plus one fp32 scale a block."""
    stored = ternary = 0
    for layer in packed.linears.values():
        codes, scales, _ = nbits_tensors(layer)
        stored += codes.nbytes + scales.nbytes
        ternary += layer.n_ternary_weights
    return 8 * stored / max(ternary, 1)


def export_bundle(
    model: BitZeroLM,
    tokenizer_path: str | Path,
    bundle_dir: str | Path,
    held_out: HeldOut,
    *,
    variants: Sequence[str] = ("nbits", "exact"),
    tolerances: Mapping[str, float],
    greedy_tokens: int,
    source: Mapping[str, Any] | None = None,
    extras: Mapping[str, str | Path] | None = None,
) -> dict[str, Any]:
    """Write the bundle and return its manifest; raise ExportError when parity is out of tolerance.
    `extras` ({name in the bundle: file}) travel with the model, listed with their checksums."""
    tokenizer = Tokenizer.load(tokenizer_path)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ExportError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model was trained for {model.config.vocab_size}"
        )
    model = model.float().eval()
    with staged_folder(bundle_dir) as staging:
        packed = pack_model(model, metadata=dict(source or {}))
        save_packed(packed, staging / PACKED)
        shutil.copyfile(tokenizer_path, staging / TOKENIZER)
        files = {"tokenizer": file_entry(staging, TOKENIZER), "packed": file_entry(staging, PACKED)}
        for variant in variants:
            (staging / variant).mkdir()
            onnx.save_model(build_graph(packed, variant), staging / variant / ONNX_FILE)
            files[variant] = file_entry(staging, f"{variant}/{ONNX_FILE}")
        for name, path in (extras or {}).items():
            shutil.copyfile(path, staging / name)
        extra_files = {name: file_entry(staging, name) for name in extras or {}}
        stop_ids = [tokenizer.eos_id, tokenizer.end_id]
        manifest: dict[str, Any] = {
            "model_id": model_id([*files.values(), *extra_files.values()]),
            "config": model.config.to_dict(),
            "tokenizer": files["tokenizer"],
            "packed": files["packed"],
            "variants": {v: files[v] for v in variants},
            "default_variant": variants[0],
            "stop_token_ids": stop_ids,
            "sizes": _sizes(packed, files, variants),
            "source": dict(source or {}),
            "extras": extra_files,
        }
        write_manifest(staging, manifest)
        reference = torch_reference(model, held_out.sequences, held_out.prompts, greedy_tokens, stop_ids)
        manifest["parity"] = {
            variant: compare(BundleRuntime.load(staging, variant, providers=[CPU]), reference, greedy_tokens)
            for variant in variants
        }
        manifest["parity_tolerance"] = {v: float(tolerances[v]) for v in variants}
        write_manifest(staging, manifest)
        _check_tolerances(manifest)
    return manifest


def _sizes(packed: PackedModel, files: Mapping[str, Mapping[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    tensors = packed.sizes()
    fp32_bytes = tensors["fp32_tensor_bytes"]
    sizes: dict[str, Any] = {
        "parameters": tensors["parameters"],
        "ternary_weights": tensors["ternary_weights"],
        "critical_weights": tensors["critical_weights"],
        "fp32_model_bytes": fp32_bytes,
        "packed": {
            "bytes": files["packed"]["bytes"],
            "bits_per_weight_ternary": tensors["bits_per_weight_ternary"],
            "bits_per_weight_model": tensors["bits_per_weight_model"],
        },
    }
    for variant in variants:
        size = files[variant]["bytes"]
        sizes[variant] = {"bytes": size, "fp32_ratio": fp32_bytes / size, "bits_per_weight_model": 8 * size / tensors["parameters"]}
    if "nbits" in variants:
        sizes["nbits"]["bits_per_weight_ternary"] = nbits_bits_per_weight(packed)
    if "exact" in variants:
        sizes["exact"]["bits_per_weight_ternary"] = tensors["bits_per_weight_ternary"]  # the packed codes
    return sizes


def _check_tolerances(manifest: Mapping[str, Any]) -> None:
    for variant, figures in manifest["parity"].items():
        tolerance = manifest["parity_tolerance"][variant]
        if figures["max_rel_error"] > tolerance:
            raise ExportError(
                f"the {variant} export is off by a relative logit error of {figures['max_rel_error']:.3g}, "
                f"above its tolerance {tolerance:.3g}"
            )
