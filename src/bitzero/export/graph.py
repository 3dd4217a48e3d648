"""The ONNX graph of a packed model, with a KV cache, built node by node with onnx.helper.

Built directly rather than through torch.onnx: the ternary matmuls are custom ops
(com.microsoft.MatMulNBits) or integer ops (MatMulInteger) that a traced fake-quant forward would
never produce, so tracing would need graph surgery on every layer anyway. Building from the packed
numpy arrays also keeps the graph exactly what the bundle stores (no torch needed here).

One graph serves prefill and decode: inputs ``input_ids`` (batch, seq) and, per layer,
``past_key.i`` / ``past_value.i`` (batch, heads, past, head_dim), empty (past = 0) on the first
call; outputs ``logits`` (batch, seq, vocab) and ``present_key.i`` / ``present_value.i`` (batch,
heads, past + seq, head_dim). Positions and the causal mask come from the past length.

Variants of every BitLinear (activations always per-token absmax int8, as in training):
* ``exact``: int8 activations (as uint8 with zero point 128) x int8 ternary codes through
  MatMulInteger, rescaled by gamma / s; the codes are stored 2-bit packed and unpacked by
  constant folding when the session starts;
* ``nbits``: MatMulNBits bits=2 (accuracy_level=4: onnxruntime's int8 fast path) on the
  dequantized activations, one scale per block of 128 along K;
* ``fp32``: a dense fp32 MatMul of the effective weights (a baseline for the benchmark).
Critical channels run as a full-precision MatMul (fp32, or fp16 weights for ``nbits``) and are
gathered back into place.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitzero.export.packing import ZERO_CODE, PackedLinear, PackedModel

VARIANTS = ("nbits", "exact", "fp32")
OPSET = 21
IR_VERSION = 10  # the newest onnxruntime 1.31 loads
NBITS_BLOCK = 128
ACT_QMAX = 127.0
ACT_CLAMP = 1e-5


def nbits_block_size(in_features: int) -> int:
    """128 along K, or the next power of two (>= 16) for narrower layers."""
    return max(16, min(NBITS_BLOCK, 1 << max(in_features - 1, 1).bit_length()))


def nbits_tensors(layer: PackedLinear) -> tuple[np.ndarray, np.ndarray, int]:
    """MatMulNBits B (N, blocks, block/4) and scales (N * blocks) for the ternary rows."""
    block = nbits_block_size(layer.in_features)
    blocks = -(-layer.in_features // block)
    n = layer.codes.shape[0]
    padded = np.full((n, blocks * block // 4), ZERO_CODE * 0b01010101, dtype=np.uint8)
    padded[:, : layer.codes.shape[1]] = layer.codes
    scales = np.full(n * blocks, layer.gamma, dtype=np.float32)
    return padded.reshape(n, blocks, block // 4), scales, block


class _Builder:
    """Collects nodes and initializers, naming every intermediate uniquely."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, value: np.ndarray | float | list[int], name: str | None = None) -> str:
        array = np.asarray(value, dtype=np.float32) if isinstance(value, float) else np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self._count += 1
        name = name or f"const_{self._count}"
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", outputs: int = 1, **attrs: object) -> str | list[str]:
        self._count += 1
        names = [f"{op_type.lower()}_{self._count}" + (f"_{i}" if outputs > 1 else "") for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=f"n{self._count}", domain=domain, **attrs))
        return names if outputs > 1 else names[0]

    def rms_norm(self, x: str, weight: np.ndarray, eps: float, name: str) -> str:
        mean_sq = self.op("ReduceMean", [self.op("Mul", [x, x]), self.const([-1])], keepdims=1)
        inv = self.op("Reciprocal", [self.op("Sqrt", [self.op("Add", [mean_sq, self.const(float(eps))])])])
        return self.op("Mul", [self.op("Mul", [x, inv]), self.const(weight.astype(np.float32), name)])

    def unpacked_codes(self, layer: PackedLinear, name: str) -> str:
        """(K, N) int8 codes, stored as the 2-bit packed bytes and unpacked by the graph itself.

        Every input is an initializer, so onnxruntime folds this into one int8 constant when the
        session starts: the file keeps 2 bits a weight, the kernel gets int8.
        """
        n, k = layer.codes.shape[0], layer.in_features
        fields = self.op("BitShift", [
            self.op("Unsqueeze", [self.const(layer.codes, f"{name}.codes"), self.const([-1])]),
            self.const(np.array([0, 2, 4, 6], dtype=np.uint8)),
        ], direction="RIGHT")
        stored = self.op("BitwiseAnd", [fields, self.const(np.uint8(0b11))])
        stored = self.op("Reshape", [stored, self.const(np.array([n, -1], dtype=np.int64))])
        stored = self.op("Slice", [stored, self.const([0]), self.const([k]), self.const([1])])
        codes = self.op("Sub", [self.op("Cast", [stored], to=TensorProto.INT8), self.const(np.int8(ZERO_CODE))])
        return self.op("Transpose", [codes], perm=[1, 0])

    def bit_linear(self, x: str, layer: PackedLinear, variant: str, name: str) -> str:
        """Per-token int8 activations, then the variant's ternary matmul, critical rows merged."""
        amax = self.op("Max", [self.op("ReduceMax", [self.op("Abs", [x]), self.const([-1])], keepdims=1), self.const(ACT_CLAMP)])
        scale = self.op("Div", [self.const(ACT_QMAX), amax])
        grid = self.op("Clip", [self.op("Round", [self.op("Mul", [x, scale])]), self.const(-ACT_QMAX - 1), self.const(ACT_QMAX)])
        dequant = self.op("Div", [grid, scale])
        if variant == "fp32":
            return self.op("MatMul", [dequant, self.const(layer.dense().T.copy(), f"{name}.weight")])
        n_ternary = layer.codes.shape[0]
        if variant == "exact":
            codes = self.unpacked_codes(layer, name)
            # uint8 activations with zero point 128 (the same integers): onnxruntime's u8 x s8
            # kernel is ~200x faster than its s8 x s8 fallback at one token (measured).
            shifted = self.op("Cast", [self.op("Add", [grid, self.const(128.0)])], to=TensorProto.UINT8)
            acc = self.op("MatMulInteger", [shifted, codes, self.const(np.uint8(128))])
            gamma = self.const(np.float32(layer.gamma))
            ternary = self.op("Div", [self.op("Mul", [self.op("Cast", [acc], to=TensorProto.FLOAT), gamma]), scale])
            critical_dtype = np.float32
        elif variant == "nbits":
            packed, scales, block = nbits_tensors(layer)
            ternary = self.op(
                "MatMulNBits", [dequant, self.const(packed, f"{name}.nbits"), self.const(scales, f"{name}.scales")],
                domain="com.microsoft", K=layer.in_features, N=n_ternary, bits=2, block_size=block, accuracy_level=4,
            )
            critical_dtype = np.float16
        else:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        if not layer.critical_mask.any():
            return ternary
        critical_weight = self.const(layer.critical_weight.T.astype(critical_dtype), f"{name}.critical")
        if critical_dtype != np.float32:
            critical_weight = self.op("Cast", [critical_weight], to=TensorProto.FLOAT)
        critical = self.op("MatMul", [dequant, critical_weight])
        order = np.concatenate([np.flatnonzero(~layer.critical_mask), np.flatnonzero(layer.critical_mask)])
        return self.op("Gather", [self.op("Concat", [ternary, critical], axis=-1), self.const(np.argsort(order))], axis=-1)


def build_graph(packed: PackedModel, variant: str = "nbits") -> onnx.ModelProto:
    """The model as one ONNX graph with past/present key-value inputs and outputs."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    cfg = packed.config
    n_layer, n_head, width = cfg["n_layer"], cfg["n_head"], cfg["n_embd"]
    head_dim, eps = width // n_head, cfg["norm_eps"]
    b = _Builder()
    lin = packed.linears
    dense = packed.dense

    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", cfg["vocab_size"]])]
    for i in range(n_layer):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}.{i}", TensorProto.FLOAT, ["batch", n_head, "past", head_dim]))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}.{i}", TensorProto.FLOAT, ["batch", n_head, "total", head_dim]))

    # Positions past .. past+seq-1, rotary tables, and the causal mask as an additive bias.
    past = b.op("Squeeze", [b.op("Shape", ["past_key.0"], start=2, end=3)])
    seq = b.op("Squeeze", [b.op("Shape", ["input_ids"], start=1, end=2)])
    total = b.op("Add", [past, seq])
    one = b.const(np.int64(1))
    positions = b.op("Range", [past, total, one])
    keys = b.op("Range", [b.const(np.int64(0)), total, one])
    allowed = b.op("LessOrEqual", [keys, b.op("Unsqueeze", [positions, b.const([1])])])
    bias = b.op("Where", [allowed, b.const(0.0), b.const(-math.inf)])
    cos = b.op("Gather", [b.const(dense["rope_cos"], "rope_cos"), positions])
    sin = b.op("Gather", [b.const(dense["rope_sin"], "rope_sin"), positions])
    heads_shape = b.const(np.array([0, 0, n_head, head_dim], dtype=np.int64))
    merge_shape = b.const(np.array([0, 0, width], dtype=np.int64))
    inv_sqrt = b.const(1.0 / math.sqrt(head_dim))

    def rotate(x: str) -> str:
        first, second = b.op("Split", [x], axis=-1, num_outputs=2, outputs=2)
        rotated = b.op("Concat", [b.op("Neg", [second]), first], axis=-1)
        return b.op("Add", [b.op("Mul", [x, cos]), b.op("Mul", [rotated, sin])])

    def heads(x: str) -> str:
        return b.op("Transpose", [b.op("Reshape", [x, heads_shape])], perm=[0, 2, 1, 3])

    x = b.op("Gather", [b.const(dense["embed.weight"], "embed.weight"), "input_ids"])
    for i in range(n_layer):
        p = f"blocks.{i}"
        h = b.rms_norm(x, dense[f"{p}.attn_norm.weight"], eps, f"{p}.attn_norm.weight")
        q, k, v = (heads(b.bit_linear(h, lin[f"{p}.attn.{n}_proj"], variant, f"{p}.attn.{n}_proj")) for n in "qkv")
        q, k = rotate(q), rotate(k)
        b.nodes.append(helper.make_node("Concat", [f"past_key.{i}", k], [f"present_key.{i}"], axis=2))
        b.nodes.append(helper.make_node("Concat", [f"past_value.{i}", v], [f"present_value.{i}"], axis=2))
        scores = b.op("MatMul", [q, b.op("Transpose", [f"present_key.{i}"], perm=[0, 1, 3, 2])])
        weights = b.op("Softmax", [b.op("Add", [b.op("Mul", [scores, inv_sqrt]), bias])], axis=-1)
        attn = b.op("MatMul", [weights, f"present_value.{i}"])
        attn = b.op("Reshape", [b.op("Transpose", [attn], perm=[0, 2, 1, 3]), merge_shape])
        attn = b.rms_norm(attn, dense[f"{p}.attn.sub_norm.weight"], eps, f"{p}.attn.sub_norm.weight")
        x = b.op("Add", [x, b.bit_linear(attn, lin[f"{p}.attn.o_proj"], variant, f"{p}.attn.o_proj")])

        h = b.rms_norm(x, dense[f"{p}.ffn_norm.weight"], eps, f"{p}.ffn_norm.weight")
        up = b.bit_linear(h, lin[f"{p}.ffn.up_proj"], variant, f"{p}.ffn.up_proj")
        if cfg["ffn_type"] == "swiglu":
            gate = b.bit_linear(h, lin[f"{p}.ffn.gate_proj"], variant, f"{p}.ffn.gate_proj")
            hidden = b.op("Mul", [b.op("Mul", [gate, b.op("Sigmoid", [gate])]), up])
        else:
            relu = b.op("Relu", [up])
            hidden = b.op("Mul", [relu, relu])
        hidden = b.rms_norm(hidden, dense[f"{p}.ffn.sub_norm.weight"], eps, f"{p}.ffn.sub_norm.weight")
        x = b.op("Add", [x, b.bit_linear(hidden, lin[f"{p}.ffn.down_proj"], variant, f"{p}.ffn.down_proj")])

    x = b.rms_norm(x, dense["norm.weight"], eps, "norm.weight")
    b.nodes.append(helper.make_node("MatMul", [x, b.const(dense["lm_head.weight"].T.copy(), "lm_head.weight")], ["logits"]))
    graph = helper.make_graph(b.nodes, f"bitzero_{variant}", inputs, outputs, b.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if variant == "nbits":
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION, producer_name="bitzero")
    onnx.checker.check_model(model, full_check=True)
    return model

