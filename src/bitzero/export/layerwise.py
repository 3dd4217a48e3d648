"""Layer-wise parity: every sub-layer of an exported graph fed PyTorch's own input.

End-to-end logit error is the wrong test of an export. In a barely trained 30-layer ternary
student a 1e-7 difference flips one per-token int8 activation sitting on a rounding edge, later
layers amplify it, and the end-to-end error depends on the CPU's numeric path (AMX or not, thread
count), not on whether the export is right. Here the graph is rewired so that each residual-stream
tensor (``graph.residual_names``) is an input as well as an output: every sub-layer (attention or
feed-forward of one block, the embedding, the final norm with lm_head) computes from PyTorch's own
input, so a rounding flip stays in the sub-layer where it happens and cannot cascade.

The error of a sub-layer is the norm of (export - PyTorch) over all positions, relative to the norm
of what the sub-layer adds to the residual stream (the residual itself is the input, equal on both
sides, and would hide a broken sub-layer). Keys and values (after rotary) of each block are compared
too, relative to their own norm: a rotary table off by one position leaves full-sequence attention
unchanged (only relative angles enter its scores) but not the cache. Everything is checked twice:
on whole sequences, and on their second half after a KV cache of the first half, fed with
PyTorch's keys and values, so a wrong cache offset or mask shows.

Each variant is compared with PyTorch running the weights its graph stores (``graph_reference``:
the int4 variant's 4-bit projections, the embedding/lm_head tables of ``TABLE_BITS``) and, for the
int4 projections, the int8 activations MatMulNBits computes with (``Int4Reference``): the check is
of the graph, and the rounding of weights and activations is the NLL's business.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch.nn import functional as F

from bitzero import kernels
from bitzero.export.graph import INT4_DEFAULT_ZERO, PROJECTIONS, ROW_TABLES, TABLE_BITS, residual_names
from bitzero.export.packing import Int4Weight, quantize_int4, quantize_table, quantize_table_rows
from bitzero.kernels import KERNEL_VARIANTS
from bitzero.model import BitZeroLM
from bitzero.model.transformer import Block

EXPORTED = ".export"  # suffix of a rewired residual tensor's own (exported) value
MASK = "attention_mask"


@dataclass(frozen=True)
class Stage:
    """One compared tensor: ``label`` names it in messages, ``exported``/``expected`` are the two sides'
    tensor names, ``baseline`` the PyTorch tensor its error is relative to the difference from (None:
    to the expected tensor's own norm)."""

    label: str
    exported: str
    expected: str
    baseline: str | None


def stages(n_layer: int) -> list[Stage]:
    names = residual_names(n_layer)
    result = [Stage("embedding", names[0] + EXPORTED, names[0], None)]
    for before, after in zip(names, names[1:], strict=False):
        block, part = before.split(".")[1:3]
        result.append(Stage(f"blocks.{block}.{part}", after + EXPORTED, after, before))
    for i in range(n_layer):
        for kind in ("key", "value"):
            result.append(Stage(f"blocks.{i}.attn {kind}s", f"present_{kind}.{i}", f"{kind}.{i}", None))
    result.append(Stage("norm + lm_head", "logits", "logits", None))
    return result


def forced_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with every residual tensor R an input, and R's computed value an output ``R.export``."""
    forced = copy.deepcopy(model)
    graph = forced.graph
    names = set(residual_names(int(len([i for i in graph.input if i.name.startswith("past_key.")]))))
    width = next(int(t.dims[0]) for t in graph.initializer if t.name == "norm.weight")  # the final norm's gain
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] in names:
            node.output[0] += EXPORTED
    if sum(node.output[0].endswith(EXPORTED) for node in graph.node) != len(names):
        raise ValueError("the graph does not name its residual stream (graph.residual_names): export it anew")
    for name in sorted(names):
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "seq", width]))
        graph.output.append(helper.make_tensor_value_info(name + EXPORTED, TensorProto.FLOAT, ["batch", "seq", width]))
    return forced


@torch.no_grad()
def torch_states(model: BitZeroLM, ids: Sequence[int]) -> dict[str, np.ndarray]:
    """PyTorch's residual stream at every named point, keys/values after rotary, and logits."""
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured[name] = args[0]
        return hook

    hooks = [model.norm.register_forward_pre_hook(keep("norm.input"))]
    for i, block in enumerate(model.blocks):
        assert isinstance(block, Block)
        hooks.append(block.register_forward_pre_hook(keep(f"blocks.{i}.attn.input")))
        hooks.append(block.ffn_norm.register_forward_pre_hook(keep(f"blocks.{i}.ffn.input")))
    cache = model.new_kv_cache(len(ids))
    try:
        logits, _ = model(torch.tensor([list(ids)]), kv_cache=cache)
    finally:
        for handle in hooks:
            handle.remove()
    states = {name: value.float().numpy() for name, value in captured.items()}
    states["logits"] = logits.float().numpy()
    for i in range(model.config.n_layer):
        keys, values = cache.layer(i)
        states[f"key.{i}"], states[f"value.{i}"] = keys.float().numpy(), values.float().numpy()
    return states


class Int4Reference(torch.nn.Module):
    """What the int4 graph computes for one projection (``graph._Builder.matmul_int4``): MatMulNBits
    (accuracy_level 4) quantizes x to int8 per block of K, absmax / 127, rounding half to even, and
    multiplies by the codes centred on the default zero point, s (q - 8); the rest of each weight,
    s (8 - z), multiplies the fp32 block sums of x."""

    centred: torch.Tensor  # (N, padded K)
    offset: torch.Tensor  # (N, blocks)

    def __init__(self, weight: Int4Weight, bias: torch.Tensor | None) -> None:
        super().__init__()
        n, blocks, blob = weight.blob.shape
        self.block, self.in_features = 2 * blob, weight.in_features
        offset = weight.scales * (INT4_DEFAULT_ZERO - weight.zero_points)
        dense = np.zeros((n, blocks * self.block), dtype=np.float32)
        dense[:, : self.in_features] = weight.dense()
        centred = dense - np.repeat(offset, self.block, axis=1)
        self.register_buffer("centred", torch.from_numpy(centred.astype(np.float32)))
        self.register_buffer("offset", torch.from_numpy(offset.astype(np.float32)))
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (0, int(self.centred.shape[1]) - self.in_features))
        blocks = padded.unflatten(-1, (-1, self.block))
        amax = blocks.abs().amax(-1, keepdim=True)
        codes = torch.round(blocks * torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax)))
        quantized = (codes * (amax / 127.0)).flatten(-2)
        return F.linear(quantized, self.centred) + F.linear(blocks.sum(-1), self.offset, self.bias)


def graph_reference(model: BitZeroLM, variant: str) -> BitZeroLM:
    """A copy of ``model`` holding the weights ``variant``'s graph stores and computing as it does: the
    int4 graph's projections (``Int4Reference``), the ternary kernel's fp16 critical rows, and the
    dequantized tables where the variant quantizes them (``TABLE_BITS``, ``ROW_TABLES``)."""
    reference = copy.deepcopy(model)
    modules = dict(reference.named_modules())
    with torch.no_grad():
        if variant in KERNEL_VARIANTS:
            for _, layer in reference.bit_linears():
                layer.freeze_mask()  # the mask stays the exported one while its critical rows are rounded
                rows = layer.critical_mask
                layer.weight[rows] = layer.weight[rows].half().float()
        if variant == "int4":
            for i in range(reference.config.n_layer):
                for name in PROJECTIONS:
                    parent, child = f"blocks.{i}.{name}".rsplit(".", 1)
                    layer = modules[f"{parent}.{child}"]
                    assert isinstance(layer, torch.nn.Linear)
                    weight = quantize_int4(layer.weight.detach().float().numpy())
                    setattr(modules[parent], child, Int4Reference(weight, layer.bias))
        if TABLE_BITS.get(variant) or variant in ROW_TABLES:
            for table in (reference.embed, reference.lm_head):
                if table is not None:
                    values = table.weight.detach().float().numpy()
                    rounded = quantize_table_rows(values) if variant in ROW_TABLES else quantize_table(values, TABLE_BITS[variant])
                    table.weight.copy_(torch.from_numpy(rounded.dense()))
    return reference


class _Errors:
    """Squared norms of differences and baselines per stage, summed over sequences."""

    def __init__(self) -> None:
        self.diff: dict[str, float] = defaultdict(float)
        self.base: dict[str, float] = defaultdict(float)

    def add(self, label: str, got: np.ndarray, expected: np.ndarray, baseline: np.ndarray) -> None:
        self.diff[label] += float(np.square(got.astype(np.float64) - expected).sum())
        self.base[label] += float(np.square(expected.astype(np.float64) - baseline).sum())

    def relative(self) -> dict[str, float]:
        return {label: float(np.sqrt(self.diff[label] / max(self.base[label], 1e-30))) for label in self.diff}


def layerwise_parity(
    graph: onnx.ModelProto, reference: BitZeroLM, sequences: Sequence[Sequence[int]], threads: int | None = None
) -> dict[str, Any]:
    """Relative error of every stage of ``graph`` fed ``reference``'s inputs, without and with a KV cache.

    Returns ``{"stages": {label: error}, "cached": {label: error}, "max_rel_error", "worst"}``.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    kernels.register(options)
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(forced_graph(graph).SerializeToString(), options, providers=["CPUExecutionProvider"])
    n_layer = reference.config.n_layer
    compared = stages(n_layer)
    residuals = residual_names(n_layer)
    outputs = [o.name for o in session.get_outputs()]
    inputs = {i.name for i in session.get_inputs()}
    whole, cached = _Errors(), _Errors()
    for ids in sequences:
        states = torch_states(reference, ids)
        for start, errors in ((0, whole), (len(ids) // 2, cached)):
            if start == len(ids):
                continue
            feeds: dict[str, np.ndarray] = {"input_ids": np.asarray([list(ids)[start:]], dtype=np.int64)}
            if MASK in inputs:  # the attention mask spans the cached positions and the new ones
                feeds[MASK] = np.ones((1, len(ids)), dtype=np.int64)
            feeds.update({name: states[name][:, start:] for name in residuals})
            for i in range(n_layer):
                feeds[f"past_key.{i}"] = states[f"key.{i}"][:, :, :start]
                feeds[f"past_value.{i}"] = states[f"value.{i}"][:, :, :start]
            got = dict(zip(outputs, session.run(None, feeds), strict=True))
            for stage in compared:
                # Keys/values are (B, H, T, D), present ones past included; the rest (B, T, ...) new positions only.
                if stage.expected.startswith(("key.", "value.")):
                    expected, exported = states[stage.expected][:, :, start:], got[stage.exported][:, :, start:]
                else:
                    expected, exported = states[stage.expected][:, start:], got[stage.exported]
                base = np.zeros_like(expected) if stage.baseline is None else states[stage.baseline][:, start:]
                errors.add(stage.label, exported, expected, base)
    figures = {"stages": whole.relative(), "cached": cached.relative()}
    worst = max(((label, kind) for kind in ("stages", "cached") for label in figures[kind]),
                key=lambda key: figures[key[1]][key[0]])
    return {**figures, "max_rel_error": figures[worst[1]][worst[0]], "worst": _describe(*worst)}


def _describe(label: str, kind: str) -> str:
    return label if kind == "stages" else f"{label} after a KV cache"
