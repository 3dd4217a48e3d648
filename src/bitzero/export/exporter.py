"""Checkpoint -> bundle: pack, build one ONNX graph per variant, measure parity and held-out NLL,
write bitzero.json.

Each variant's folder holds its graph and the ``genai_config.json`` onnxruntime-genai loads it by
(bitzero.serving.genai). A ternary student's bundle holds the ``nbits`` and ``exact`` graphs plus the
compact packed checkpoint; a full-precision teacher's holds the ``int4`` graph (``fp32`` on request): see
bitzero.export.graph. The bundle is assembled in a staging folder beside its destination and
swapped in by rename, so the service never sees a bundle half written or one whose manifest
describes other files.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from bitzero.errors import ExportPackageError
from bitzero.export.convert import pack_model
from bitzero.export.graph import (
    PROJECTIONS,
    build_graph,
    check_variant,
    int4_on_kernel,
    nbits_tensors,
    uses_kernels,
    variants_for,
)
from bitzero.export.heldout import Scored, assistant_nll, scored_conversations
from bitzero.export.layerwise import graph_reference, layerwise_parity
from bitzero.export.packing import INT4_BLOCK, INT4_TILE, KERNEL_HALF, PackedModel, save_packed
from bitzero.export.parity import compare, torch_reference
from bitzero.files import staged_folder
from bitzero.kernels import KERNEL_VARIANTS
from bitzero.model import BitZeroLM
from bitzero.serving.bundle import ONNX_FILE, PACKED, TOKENIZER, file_entry, model_id, write_manifest
from bitzero.serving.genai import CONFIG_FILE, write_config
from bitzero.serving.runtime import CPU, BundleRuntime
from bitzero.text import Tokenizer

INT4_BITS = 4 + (32 + 32) / INT4_BLOCK  # MatMulNBits: codes, an fp32 scale and an fp32 zero point per block
# Layer-wise parity tolerances (bitzero.export.layerwise): the largest relative error of any
# sub-layer, key/value or the head, fed PyTorch's own input. Derived from what each variant
# legitimately differs by, not from a run: every bug the tests inject (a wrong scale, a swapped or
# transposed projection, a dropped critical channel, rotary or cache positions off by one) errs
# by 0.2 or more in the sub-layer where it sits.
#   nbits: MatMulNBits re-quantizes the (already int8) activations to int8 per block of K, off by
#     up to half a step of the block's absmax / 127: relative to the activations' RMS that is
#     crest factor / (127 * sqrt(12)) ~ 0.0023 x crest factor, 0.03-0.07 for SmolLM2's activation
#     outliers (crest 15-30; 0.032 measured on its 30-layer PTQ student); fp16 critical rows and
#     tables add ~1e-4. Hence 0.1.
#   exact: the same integers as PyTorch; an fp32 rounding now and then flips one int8 activation
#     on a .5 edge, a 1/127 change of one element (0.0034 worst measured, 30 layers). Hence 0.02.
#   ternary (our kernel, against PyTorch with the fp16 critical rows it stores): the projections are
#     exact's integers (the same occasional flips), critical rows summed in another order (~1e-7);
#     lm_head is nbits' (8-bit table, int8 activations per block of 32: 0.0054 measured on the tiny
#     student, as int4's). Hence 0.02.
#   int4 (against PyTorch on the same 4-bit weights and tables and the projections' int8 activations
#     per block of 32, layerwise.graph_reference): the projections are the same integers (an fp32
#     rounding now and then flips one on a .5 edge, as exact's); lm_head's int8 activations are not
#     modelled: half a step of the block's absmax / 127, crest factor / (127 * sqrt(12)) ~ 0.0023 x
#     a block's crest (2-5), 0.0054 measured on the tiny random teacher, 0.0055 on the real SmolLM2
#     teacher (its worst stage; with the projections' activations unmodelled its blocks would err
#     by 0.040, SmolLM2's outliers). Hence 0.02. fp32: fp32 throughout, ~1e-5. Hence 0.01.
TOLERANCES = {"ternary": 0.02, "nbits": 0.1, "exact": 0.02, "int4": 0.02, "fp32": 0.01}


class ExportError(ExportPackageError, RuntimeError):
    """The exported model does not match the PyTorch model within the stated tolerance;
    ``manifest`` holds every figure measured up to the failure (for the stage's report)."""

    def __init__(self, message: str, manifest: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.manifest = dict(manifest or {})


@dataclass(frozen=True)
class HeldOut:
    """Held-out token sequences (logit parity), chat prompts (greedy parity) and the
    conversations whose assistant tokens are scored (NLL), all from validation records."""

    sequences: list[list[int]]
    prompts: list[list[int]]
    scored: list[Scored]


def held_out_inputs(
    records: Sequence[Mapping[str, Any]], tokenizer: Tokenizer, max_tokens: int, parity_limit: int, nll_limit: int
) -> HeldOut:
    """From records with a "conversation": whole conversations (cut to ``max_tokens``), prompts
    up to their last assistant turn (its last ``max_tokens // 2`` ids), and the NLL set."""
    sequences, prompts = [], []
    for record in [r for r in records if r.get("conversation")][:parity_limit]:
        turns = record["conversation"]
        sequences.append(tokenizer.encode_chat(turns)[:max_tokens])
        last = max((i for i, t in enumerate(turns) if t.get("role") == "assistant"), default=len(turns))
        prompts.append(tokenizer.encode_chat(turns[:last], add_generation_prompt=True)[-(max_tokens // 2) :])
    if not sequences:
        raise ExportError("no held-out conversations to measure parity on")
    return HeldOut(sequences, prompts, scored_conversations(records, tokenizer, nll_limit, max_tokens))


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
    variants: Sequence[str] | None = None,
    tolerances: Mapping[str, float] | None = None,
    greedy_tokens: int,
    source: Mapping[str, Any] | None = None,
    extras: Mapping[str, str | Path] | None = None,
) -> dict[str, Any]:
    """Write the bundle and return its manifest; raise ExportError when layer-wise parity is out of
    tolerance (``TOLERANCES``, where ``tolerances`` does not override one), leaving any earlier bundle in place. `variants` default to all of the model's kind, the first is the service's default (and the one
    whose held-out NLL is measured); `extras` ({name in the bundle: file}) travel with the model,
    listed with their checksums."""
    variants = list(variants or variants_for(model.config.to_dict()))
    for variant in variants:
        check_variant(model.config.to_dict(), variant)
    variants = [v for v in variants if v in variants_for(model.config.to_dict())]  # ternary: where the kernel is built
    if not variants:
        raise ExportError("no variant to export: the ternary kernel is not built here (python -m bitzero.kernels.build)")
    tokenizer = Tokenizer.load(tokenizer_path)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ExportError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model was trained for {model.config.vocab_size}"
        )
    model = model.float().eval()
    with staged_folder(bundle_dir) as staging:
        packed = pack_model(model, metadata=dict(source or {}))
        shutil.copyfile(tokenizer_path, staging / TOKENIZER)
        files = {"tokenizer": file_entry(staging, TOKENIZER)}
        if model.config.quantized:  # the compact checkpoint; a teacher's would be its fp32 weights again
            save_packed(packed, staging / PACKED)
            files["packed"] = file_entry(staging, PACKED)
        graphs = {variant: build_graph(packed, variant) for variant in variants}
        genai: dict[str, Any] = {}
        for variant, graph in graphs.items():
            (staging / variant).mkdir()
            onnx.save_model(graph, staging / variant / ONNX_FILE)
            files[variant] = file_entry(staging, f"{variant}/{ONNX_FILE}")
            write_config(staging / variant, model.config.to_dict(), tokenizer.stop_ids, ONNX_FILE)
            genai[variant] = file_entry(staging, f"{variant}/{CONFIG_FILE}")
        for name, path in (extras or {}).items():
            shutil.copyfile(path, staging / name)
        extra_files = {name: file_entry(staging, name) for name in extras or {}}
        manifest: dict[str, Any] = {
            "model_id": model_id([*files.values(), *extra_files.values()]),
            "kind": "student" if model.config.quantized else "teacher",
            "config": model.config.to_dict(),
            "tokenizer": files["tokenizer"],
            **({"packed": files["packed"]} if "packed" in files else {}),
            "variants": {v: files[v] for v in variants},
            "genai": genai,
            "kernels": [v for v, graph in graphs.items() if uses_kernels(graph)],  # variants that need the kernel library
            "default_variant": variants[0],
            "sizes": _sizes(packed, files, variants),
            "source": dict(source or {}),
            "extras": extra_files,
        }
        write_manifest(staging, manifest)
        reference = torch_reference(model, held_out.sequences, held_out.prompts, greedy_tokens, tokenizer.stop_ids)
        runtimes = {v: BundleRuntime.load(staging, v, providers=[CPU]) for v in variants}
        manifest["parity"] = {v: compare(runtime, reference, greedy_tokens) for v, runtime in runtimes.items()}
        for variant, graph in graphs.items():
            manifest["parity"][variant]["layerwise"] = layerwise_parity(graph, graph_reference(model, variant), held_out.sequences)
        manifest["parity_tolerance"] = {v: float({**TOLERANCES, **(tolerances or {})}[v]) for v in variants}
        manifest["held_out_nll"] = assistant_nll(runtimes[variants[0]], held_out.scored)
        write_manifest(staging, manifest)
        _check_tolerances(manifest)
    return manifest


def _sizes(packed: PackedModel, files: Mapping[str, Mapping[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    tensors = packed.sizes()
    fp32_bytes = tensors["fp32_tensor_bytes"]
    """Bytes and bits per weight of every file: ``bits_per_weight_model`` is the whole file over all
    parameters; ``bits_per_weight_linear`` the stored bits of one ternary (or 4-bit) projection weight."""
    sizes: dict[str, Any] = {
        "parameters": tensors["parameters"],
        "ternary_weights": tensors["ternary_weights"],
        "critical_weights": tensors["critical_weights"],
        "fp32_model_bytes": fp32_bytes,
    }
    if "packed" in files:
        sizes["packed"] = {
            "bytes": files["packed"]["bytes"],
            "bits_per_weight_linear": tensors["bits_per_weight_ternary"],
            "bits_per_weight_model": tensors["bits_per_weight_model"],
        }
    for variant in variants:
        size = files[variant]["bytes"]
        sizes[variant] = {
            "bytes": size, "fp32_ratio": fp32_bytes / size, "bits_per_weight_model": 8 * size / tensors["parameters"],
            "bits_per_weight_linear": linear_bits(packed, variant),
        }
    return sizes


def kernel_bits_per_weight(packed: PackedModel) -> float:
    """Stored bits per ternary weight in the ternary graph: 2-bit codes (K padded to a multiple of 64
    in the kernel's layout) plus one fp32 scale a row."""
    stored = sum(layer.codes.shape[0] * (-(-layer.in_features // KERNEL_HALF) * KERNEL_HALF // 4 + 4)
                 for layer in packed.linears.values())
    return 8 * stored / max(sum(layer.n_ternary_weights for layer in packed.linears.values()), 1)


def int4_kernel_bits_per_weight(packed: PackedModel) -> float:
    """Stored bits per projection weight of the int4 graph on Int4MatMul: 16 bytes of codes and two
    fp16 values a block of 32, blocks padded to an even count and rows to a multiple of 16 for the
    scales and mins (``Int4Weight.kernel_blocks``)."""
    shapes = [packed.dense[f"blocks.{i}.{name}.weight"].shape
              for i in range(packed.config["n_layer"]) for name in PROJECTIONS]
    blocks = [2 * -(-k // (2 * INT4_BLOCK)) for _, k in shapes]
    stored = sum(n * 16 * b + -(-n // INT4_TILE) * INT4_TILE * 4 * b for (n, _), b in zip(shapes, blocks, strict=True))
    return 8 * stored / max(sum(n * k for n, k in shapes), 1)


def linear_bits(packed: PackedModel, variant: str) -> float:
    """Stored bits of one projection weight in ``variant``'s graph exported here."""
    if variant == "nbits":
        return nbits_bits_per_weight(packed)
    if variant in KERNEL_VARIANTS:
        return kernel_bits_per_weight(packed)
    if variant == "exact":
        return packed.sizes()["bits_per_weight_ternary"]  # the 2-bit packed codes, unpacked at load
    if variant == "int4":
        return int4_kernel_bits_per_weight(packed) if int4_on_kernel() else INT4_BITS
    return 32.0


def _check_tolerances(manifest: Mapping[str, Any]) -> None:
    """Layer-wise parity against each tolerance (end-to-end figures are reported, not gated: through
    a barely trained ternary network they measure the CPU's rounding as much as the export)."""
    for variant, figures in manifest["parity"].items():
        tolerance = manifest["parity_tolerance"][variant]
        layerwise = figures["layerwise"]
        if not layerwise["max_rel_error"] <= tolerance:
            raise ExportError(
                f"the {variant} export's {layerwise['worst']} differs from PyTorch's by a relative error of "
                f"{layerwise['max_rel_error']:.3g} when fed PyTorch's own input, above its tolerance {tolerance:.3g}",
                manifest,
            )
