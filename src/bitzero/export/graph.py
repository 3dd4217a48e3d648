"""The ONNX graph of a packed model, with a KV cache, built node by node with onnx.helper.

Built directly rather than through torch.onnx: the ternary matmuls are custom ops
(com.microsoft.MatMulNBits) or integer ops (MatMulInteger) that a traced fake-quant forward would
never produce, so tracing would need graph surgery on every layer anyway. Building from the packed
numpy arrays also keeps the graph exactly what the bundle stores (no torch needed here).

One graph serves prefill and decode, in the layout onnxruntime-genai runs (``genai_config``):
inputs ``input_ids`` (batch, seq), ``attention_mask`` (batch, past + seq) and, per layer,
``past_key.i`` / ``past_value.i`` (batch, n_kv_head, past, head_dim), empty (past = 0) on the
first call; outputs ``logits`` (batch, seq, vocab) and ``present_key.i`` / ``present_value.i``
(batch, n_kv_head, past + seq, head_dim), keys after rotary. An optional input ``logits_to_keep``
(int64 [1], as transformers' argument; 0, its default, keeps every position) computes the final
norm and lm_head for the last positions only: generation reads the last one, and lm_head over every
prompt position was a third of a prefill (SmolLM2 ternary student, 60 tokens: 179 -> 121 ms). onnxruntime-genai may hand the same
buffer as past and present (``past_present_share_buffer``): GroupQueryAttention writes in place.

The operators are onnxruntime's fused CPU kernels, as its model builder emits them:
SimplifiedLayerNormalization (RMSNorm), GroupQueryAttention (rotary, causal mask and the KV cache
in one node; positions from the attention mask), MatMulNBits; q/k/v and gate/up run as one matmul
each (their rows concatenated). The residual stream is named where each sub-layer reads it
(``residual_names``: an Identity node each, free at run time) and every sub-layer reads it from
there, so the parity check can feed every sub-layer PyTorch's own input; that is why the residual
Add is not fused into the next norm (SkipSimplifiedLayerNormalization would read its own sum).

Variants of a ternary (student) model; every BitLinear quantizes its activations per token to int8:
* ``ternary``: our own kernel, com.bitzero.TernaryMatMul (bitzero/kernels): quantization, 2-bit
  ternary rows with their scales and fp16 critical rows, each put in its output column, in one node
  (a projection is one node where ``nbits`` spends about ten; down_proj takes the gate and up halves
  and applies SwiGLU itself where no SubLN sits between); exported and served only where the kernel
  library is built (``bitzero.kernels.library_path``). Measured on SmolLM2-135M's PTQ student, 1
  thread, onnxruntime-genai (benchmarks/export_bench.py, 2 runs on a loaded host): decode 1.04x
  and prefill 1.07-1.12x the int4 anchor, about 2x ``nbits``; 2.05 stored bits a projection weight;
* ``nbits``: MatMulNBits bits=2 (accuracy_level=4: onnxruntime's int8 fast path) on the
  dequantized activations, one scale per block of 128 along K (the row's gamma, repeated); critical
  channels as fp16 weights;
* ``exact``: int8 activations (as uint8 with zero point 128) x int8 ternary codes through
  MatMulInteger, rescaled by each row's gamma / s; the codes are stored 2-bit packed and unpacked by
  constant folding when the session starts; critical channels fp32.
Variants of a full-precision (teacher) model:
* ``int4``: every linear in 4-bit blocks of 32 with an fp16 scale and min each (GGUF Q4_1's own
  format, restored exactly: ``packing.quantize_int4``), on int8 activations per block of 32. Where
  the kernel library is built, one com.bitzero.Int4MatMul node a linear (5 bits a weight; down_proj
  reads SwiGLU's halves itself) and lm_head on com.bitzero.Int8MatMul (the same 8-bit table and
  sums as MatMulNBits; 16 rows at once 22.7 -> 16.8 ms, one row 2.8 -> 3.1 ms alone and within
  noise in the whole graph); else
  MatMulNBits bits=4 (accuracy_level 4, as the anchor's builder emits it: onnxruntime's
  fp32-activation path decoded SmolLM2 2.3x slower) plus the mins' side matmul (6 bits, five nodes a
  linear). Both compute the same sums, which ``layerwise.Int4Reference`` models for the parity check.
  On SmolLM2 (1 thread, 64-token prompt, one decode step after it, minima of 12 interleaved rounds):
  Int4MatMul decoded in 10.9 ms and prefilled in 271 ms against 14.4 and 370 for MatMulNBits and
  10.8 and 271 for the int4 anchor, with the same held-out NLL (3.7231 against 3.7243, 24 chats);
* ``fp32``: plain fp32 MatMuls (the graph's own parity check, and a baseline).

Embedding and lm_head (at SmolLM2's size the tied 49152 x 576 table is a fifth of the model, and
lm_head reads all of it at every token): ``nbits`` and ``int4`` store each table once as symmetric
8-bit blocks of 32 (``packing.quantize_table``), read by GatherBlockQuantized (embedding) and
MatMulNBits bits=8 (lm_head); ``exact`` and ``fp32`` keep fp32 tables, lm_head multiplying by
the transpose (folded when the session starts). Chosen by measurement on the real SmolLM2 (a chat
of 157 tokens; 1 thread, numpy loop, decode tokens/s of the student / teacher graph):
  fp16 table, folded to fp32: NLL 2.874, decode 48 / 29 (113 MB of fp32 read a token);
  8-bit blocks:              NLL 2.877 (top-1 98%), decode 60 / 33, file -25 MB;
  4-bit blocks:              NLL 3.067 (top-1 86%), decode 68 / 34, file -39 MB.
The 4-bit table's +0.19 nats is not worth its 12%; SmolLM2's GGUF table is 8-bit blocks of 32
already, so the 8-bit table restores it (end-to-end parity 5e-6 on the real teacher). Measured
again once the teacher's projections ran on int8 activations (40 validation chats, 7114 tokens,
NLL per token; decode per step, 1 thread, interleaved with the anchor's, loaded machine):
  8-bit table:                          NLL 2.134, 0.78x the anchor's decode speed;
  8-bit embedding, 4-bit lm_head:       NLL 2.192, 0.86x;
  4-bit table (the anchor's choice):    NLL 2.300, and the anchor's own NLL 2.289 (fp32 graph: 2.132).
With the 4-bit lm_head and the int8 activations together, the companion's on-topic figure (the
conversation eval, 3 seeds) fell from 0.410 to 0.374 (the two were not measured apart; by NLL the
table is most of it, +0.058 against +0.002). What users read is worth more than 10% of decode
speed, so the table stays 8-bit.

``ternary``, which needs our kernel library anyway, stores its table once as int8 rows with a scale
each (``packing.quantize_table_rows``, 8.0 bits a weight against 9.0 for blocks of 32 with their
scales): the embedding is a Gather of a row and its scale, lm_head our TableMatMul on the float
activations. On the 600 s KD student (24 validation chats, 1 thread): held-out NLL 4.117 (8-bit
blocks, MatMulNBits' int8 activations) -> 4.107 (an fp16 table: 4.104), file 78.3 -> 74.9 MB, a
decode step 8.67 -> 8.41 ms (median of 8 interleaved runs' minima); lm_head alone 2.37 -> 1.79 ms.
A 4-bit table measured +0.13 nats, and +0.28 with each block's clipping chosen by weight error.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitzero import kernels
from bitzero.export.packing import (
    TABLE_BLOCK,
    ZERO_CODE,
    Int4Weight,
    PackedLinear,
    PackedModel,
    kernel_codes,
    quantize_int4,
    quantize_table,
    quantize_table_rows,
)
from bitzero.serving.bundle import LOGITS_TO_KEEP, head_size

STUDENT_VARIANTS = ("ternary", "nbits", "exact")
TEACHER_VARIANTS = ("int4", "fp32")
HALF_TABLES = ("ternary", "nbits", "int4")  # fp16 embedding (and untied lm_head) tables, where not quantized
TABLE_BITS = {"nbits": 8, "int4": 8}  # variants whose tables are stored in 8-bit blocks (see above)
ROW_TABLES = kernels.KERNEL_VARIANTS  # variants whose tables are int8 rows, lm_head on our TableMatMul (see above)
# lm_head's activations: int8 per block of 32 (MatMulNBits has no fp32 kernel for 8 bits: with fp32
# activations it dequantizes the whole table every call, measured 3 tokens/s on SmolLM2).
TABLE_ACCURACY = 4
OPSET = 21
IR_VERSION = 10  # the newest onnxruntime 1.31 loads
NBITS_BLOCK = 128
INT4_DEFAULT_ZERO = 8.0  # MatMulNBits' zero point for 4 bits when none is given
INT4_ACCURACY = 4  # int8 activations per block of 32 (see above)
ACT_QMAX = 127.0
ACT_CLAMP = 1e-5
PROJECTIONS = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "ffn.gate_proj", "ffn.up_proj", "ffn.down_proj")


def residual_names(n_layer: int) -> list[str]:
    """The residual stream's tensors in order: each block's attention and feed-forward inputs, then
    the final norm's input (the last block's output)."""
    return [f"blocks.{i}.{part}.input" for i in range(n_layer) for part in ("attn", "ffn")] + ["norm.input"]


def variants_for(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The variants a model can be exported as here: the student's for a quantized model (``ternary``
    only where the kernel library is built), else the teacher's."""
    if not config["quantized"]:
        return TEACHER_VARIANTS
    return tuple(v for v in STUDENT_VARIANTS if v not in kernels.KERNEL_VARIANTS or kernels.library_path() is not None)


def int4_on_kernel() -> bool:
    """Whether the ``int4`` graph exported here runs its projections on BitZero's Int4MatMul (where
    the kernel library is built) rather than MatMulNBits."""
    return kernels.library_path() is not None


def uses_kernels(graph: onnx.ModelProto) -> bool:
    """Whether ``graph`` needs BitZero's kernel library to run."""
    return any(opset.domain == kernels.DOMAIN for opset in graph.opset_import)


def check_variant(config: Mapping[str, Any], variant: str) -> None:
    allowed = STUDENT_VARIANTS if config["quantized"] else TEACHER_VARIANTS
    if variant not in allowed:
        kind = "ternary" if config["quantized"] else "full-precision"
        raise ValueError(f"a {kind} model exports as one of {allowed}, not {variant!r}")


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
    scales = np.repeat(layer.gamma, blocks).astype(np.float32)
    return padded.reshape(n, blocks, block // 4), scales, block


class _Builder:
    """Collects nodes and initializers, naming every intermediate uniquely; ``int4_kernel``: 4-bit
    matrices on BitZero's Int4MatMul (else MatMulNBits and the mins' side matmul)."""

    def __init__(self, int4_kernel: bool = False) -> None:
        self.int4_kernel = int4_kernel
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, value: np.ndarray | np.generic | float | list[int], name: str | None = None) -> str:
        array = np.asarray(value, dtype=np.float32) if isinstance(value, float) else np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self._count += 1
        name = name or f"const_{self._count}"
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:
        """A node with one output; its name."""
        return self.op_outputs(op_type, inputs, 1, domain, **attrs)[0]

    def op_outputs(self, op_type: str, inputs: list[str], outputs: int | list[str], domain: str = "", **attrs: Any) -> list[str]:
        """A node with ``outputs`` outputs (a count, or their names); their names."""
        self._count += 1
        names = outputs if isinstance(outputs, list) else [
            f"{op_type.lower()}_{self._count}" + (f"_{i}" if outputs > 1 else "") for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=f"n{self._count}", domain=domain, **attrs))
        return names

    def rms_norm(self, x: str, weight: np.ndarray, eps: float, name: str) -> str:
        return self.op("SimplifiedLayerNormalization", [x, self.const(weight.astype(np.float32), name)],
                       axis=-1, epsilon=float(eps), stash_type=1)

    def matmul_int4(self, x: str, weight: Int4Weight, name: str, gated: bool = False) -> str:
        """x @ W.T for 4-bit blocks with float zero points: one Int4MatMul node where the kernels are
        built (``int4_kernel``), else on MatMulNBits' fast path. ``gated`` (Int4MatMul only): x holds
        SwiGLU's gate and up halves, and the node reads silu(gate) * up.

        onnxruntime runs MatMulNBits with float zero points by dequantizing all of B on every call
        (measured: 10x slower decoding). So the node gets the codes with its default zero point 8,
        and the rest, W = s (q - z) = s (q - 8) + s (8 - z), is added as the per-block sums of x
        times s (8 - z): a (K/32, N) fp32 matmul, 1/32 of the work but four more nodes, and 1 bit a
        weight read. Int4MatMul computes the same sums in one node from the fp16 scales and mins.
        """
        if self.int4_kernel:
            blocks4, scales, mins = weight.kernel_blocks()
            return self.op("Int4MatMul", [x, self.const(blocks4, f"{name}.int4"), self.const(scales, f"{name}.scales"),
                                          self.const(mins, f"{name}.mins")], domain=kernels.DOMAIN, **({"gated": 1} if gated else {}))
        if gated:
            raise ValueError("a gated 4-bit matmul needs BitZero's Int4MatMul")
        n, blocks, blob = weight.blob.shape
        block = blob * 2
        codes = self.op(
            "MatMulNBits", [x, self.const(weight.blob, f"{name}.int4"), self.const(weight.scales, f"{name}.scales")],
            domain="com.microsoft", K=weight.in_features, N=n, bits=4, block_size=block, accuracy_level=INT4_ACCURACY,
        )
        padding = blocks * block - weight.in_features
        if padding:
            x = self.op("Pad", [x, self.const(np.array([0, 0, 0, 0, 0, padding], dtype=np.int64))])
        sums = self.op("ReduceSum", [self.op("Reshape", [x, self.const(np.array([0, 0, blocks, block], dtype=np.int64))]),
                                     self.const([-1])], keepdims=0)
        offset = (weight.scales * (INT4_DEFAULT_ZERO - weight.zero_points)).T
        return self.op("Add", [codes, self.op("MatMul", [sums, self.const(np.ascontiguousarray(offset), f"{name}.offset")])])

    def dense_linear(self, x: str, weight: np.ndarray, variant: str, name: str) -> str:
        """A full-precision (N, K) matrix: 4-bit blocks for ``int4``, else an fp32 MatMul."""
        if variant == "int4":
            return self.matmul_int4(x, quantize_int4(weight), name)
        return self.op("MatMul", [x, self.const(np.ascontiguousarray(weight.T, dtype=np.float32), f"{name}.weight")])

    def unpacked_codes(self, packed_codes: np.ndarray, k: int, name: str) -> str:
        """(K, N) int8 codes, stored as the 2-bit packed bytes and unpacked by the graph itself.

        Every input is an initializer, so onnxruntime folds this into one int8 constant when the
        session starts: the file keeps 2 bits a weight, the kernel gets int8.
        """
        n = packed_codes.shape[0]
        fields = self.op("BitShift", [
            self.op("Unsqueeze", [self.const(packed_codes, f"{name}.codes"), self.const([-1])]),
            self.const(np.array([0, 2, 4, 6], dtype=np.uint8)),
        ], direction="RIGHT")
        stored = self.op("BitwiseAnd", [fields, self.const(np.uint8(0b11))])
        stored = self.op("Reshape", [stored, self.const(np.array([n, -1], dtype=np.int64))])
        stored = self.op("Slice", [stored, self.const([0]), self.const([k]), self.const([1])])
        codes = self.op("Sub", [self.op("Cast", [stored], to=TensorProto.INT8), self.const(np.int8(ZERO_CODE))])
        return self.op("Transpose", [codes], perm=[1, 0])

    def bit_linear(self, x: str, layers: list[PackedLinear], variant: str, name: str, gated: bool = False) -> str:
        """Per-token int8 activations, then the variant's ternary matmul over the rows of every layer
        in ``layers`` (which share their input), critical rows merged back in place; ``gated`` (the
        kernel's variants only): ``x`` holds SwiGLU's gate and up halves, the input is silu(gate) * up."""
        k = layers[0].in_features
        rows = np.concatenate([layer.codes for layer in layers])
        has_critical = any(layer.critical_mask.any() for layer in layers)
        offsets = np.cumsum([0] + [layer.out_features for layer in layers])
        # Output column of each computed row: every layer's ternary rows, then every layer's critical rows.
        order = np.concatenate([np.flatnonzero(~layer.critical_mask) + start for layer, start in zip(layers, offsets, strict=False)]
                               + [np.flatnonzero(layer.critical_mask) + start for layer, start in zip(layers, offsets, strict=False)])
        critical_rows = np.concatenate([layer.critical_weight for layer in layers])
        gamma = np.concatenate([layer.gamma for layer in layers])
        if variant == "ternary":
            layout = kernel_codes(np.concatenate([layer.ternary() for layer in layers]))
            inputs = [x, self.const(layout, f"{name}.ternary"), self.const(gamma, f"{name}.gamma")]
            if has_critical:
                inputs += [self.const(critical_rows.astype(np.float16), f"{name}.critical"),
                           self.const(order.astype(np.int32), f"{name}.columns")]
            return self.op("TernaryMatMul", inputs, domain=kernels.DOMAIN, **({"gated": 1} if gated else {}))
        amax = self.op("Max", [self.op("ReduceMax", [self.op("Abs", [x]), self.const([-1])], keepdims=1), self.const(ACT_CLAMP)])
        scale = self.op("Div", [self.const(ACT_QMAX), amax])
        grid = self.op("Clip", [self.op("Round", [self.op("Mul", [x, scale])]), self.const(-ACT_QMAX - 1), self.const(ACT_QMAX)])
        dequant = self.op("Div", [grid, scale])
        if variant == "exact":
            codes = self.unpacked_codes(rows, k, name)
            # uint8 activations with zero point 128 (the same integers): onnxruntime's u8 x s8
            # kernel is ~200x faster than its s8 x s8 fallback at one token (measured).
            shifted = self.op("Cast", [self.op("Add", [grid, self.const(128.0)])], to=TensorProto.UINT8)
            acc = self.op("MatMulInteger", [shifted, codes, self.const(np.uint8(128))])
            ternary = self.op("Div", [self.op("Mul", [self.op("Cast", [acc], to=TensorProto.FLOAT), self.const(gamma)]), scale])
            critical_dtype: type[np.floating[Any]] = np.float32
        else:
            tensors = [nbits_tensors(layer) for layer in layers]
            packed = np.concatenate([t[0] for t in tensors])
            ternary = self.op(
                "MatMulNBits", [dequant, self.const(packed, f"{name}.nbits"),
                                self.const(np.concatenate([t[1] for t in tensors]), f"{name}.scales")],
                domain="com.microsoft", K=k, N=rows.shape[0], bits=2, block_size=tensors[0][2], accuracy_level=4,
            )
            critical_dtype = np.float16
        if not has_critical:
            return ternary
        critical_weight = self.const(critical_rows.T.astype(critical_dtype), f"{name}.critical")
        if critical_dtype != np.float32:
            critical_weight = self.op("Cast", [critical_weight], to=TensorProto.FLOAT)
        critical = self.op("MatMul", [dequant, critical_weight])
        return self.op("Gather", [self.op("Concat", [ternary, critical], axis=-1), self.const(np.argsort(order))], axis=-1)


class _GraphWriter:
    """One model's graph: embeddings, blocks (GroupQueryAttention with a KV cache, SwiGLU) and lm_head."""

    def __init__(self, packed: PackedModel, variant: str, table_bits: int | None = None) -> None:
        self.packed, self.variant, self.b = packed, variant, _Builder(int4_kernel=variant == "int4" and int4_on_kernel())
        self.row_tables = table_bits is None and variant in ROW_TABLES
        self.table_bits = TABLE_BITS.get(variant, 0) if table_bits is None else table_bits
        self._tables: dict[str, tuple[str, str, int]] = {}
        self._row_tables: dict[str, tuple[str, str]] = {}
        cfg = packed.config
        self.n_head, self.n_kv = cfg["n_head"], cfg["n_kv_head"]
        self.head_dim = head_size(cfg)
        self.eps = cfg["norm_eps"]

    def linear(self, x: str, names: list[str], fused: str) -> str:
        """The projections ``names`` of one input as one matmul (their outputs concatenated), named ``fused``."""
        layers = [self.packed.linears.get(name) for name in names]
        if all(layer is not None for layer in layers):
            return self.b.bit_linear(x, [layer for layer in layers if layer is not None], self.variant, fused)
        weights = [self.packed.dense[f"{name}.weight"] for name in names]
        return self.b.dense_linear(x, np.concatenate(weights), self.variant, fused)

    def norm(self, x: str, name: str) -> str:
        return self.b.rms_norm(x, self.packed.dense[f"{name}.weight"], self.eps, f"{name}.weight")

    def sub_norm(self, x: str, name: str) -> str:
        return self.norm(x, name) if self.packed.config["sub_norm"] else x

    def table(self, name: str) -> str:
        """An embedding-sized table as an initializer: fp16 in the compact variants, else fp32."""
        dtype = np.float16 if self.variant in HALF_TABLES else np.float32
        return self.b.const(self.packed.dense[name].astype(dtype), name)

    def as_float(self, x: str) -> str:
        return self.b.op("Cast", [x], to=TensorProto.FLOAT) if self.variant in HALF_TABLES else x

    def quantized_table(self, name: str) -> tuple[str, str, int]:
        """A table in ``table_bits``-bit blocks, stored once however many nodes read it: codes, scales, K."""
        if name not in self._tables:
            table = quantize_table(self.packed.dense[name], self.table_bits)
            self._tables[name] = (self.b.const(table.codes, f"{name}.q{self.table_bits}"),
                                  self.b.const(table.scales, f"{name}.scales"), table.in_features)
        return self._tables[name]

    def row_table(self, name: str) -> tuple[str, str]:
        """A table as int8 rows and their scales, stored once however many nodes read it."""
        if name not in self._row_tables:
            table = quantize_table_rows(self.packed.dense[name])
            self._row_tables[name] = (self.b.const(table.codes, f"{name}.int8"), self.b.const(table.scales, f"{name}.scales"))
        return self._row_tables[name]

    def embedding(self) -> str:
        if self.row_tables:
            codes, scales = self.row_table("embed.weight")
            rows = self.b.op("Cast", [self.b.op("Gather", [codes, "input_ids"])], to=TensorProto.FLOAT)
            row_scales = self.b.op("Unsqueeze", [self.b.op("Gather", [scales, "input_ids"]), self.b.const([-1])])
            return self.b.op("Mul", [rows, row_scales])
        if not self.table_bits:
            return self.as_float(self.b.op("Gather", [self.table("embed.weight"), "input_ids"]))
        codes, scales, k = self.quantized_table("embed.weight")
        rows = self.b.op("Reshape", [codes, self.b.const(np.array([0, -1], dtype=np.int64))])
        gathered = self.b.op("GatherBlockQuantized", [rows, "input_ids", scales], domain="com.microsoft",
                             bits=self.table_bits, block_size=TABLE_BLOCK, gather_axis=0, quantize_axis=1)
        padded = -(-k // TABLE_BLOCK) * TABLE_BLOCK
        if padded == k:
            return gathered
        return self.b.op("Slice", [gathered, self.b.const([0]), self.b.const([k]), self.b.const([-1])])

    def lm_head(self, x: str) -> None:
        b, name = self.b, "embed.weight" if self.packed.config["tie_embeddings"] else "lm_head.weight"
        if self.row_tables:
            b.op_outputs("TableMatMul", [x, *self.row_table(name)], ["logits"], domain=kernels.DOMAIN)
            return
        if self.table_bits:
            codes, scales, k = self.quantized_table(name)
            if self.table_bits == 8 and b.int4_kernel:  # the same sums, and faster over several tokens
                b.op_outputs("Int8MatMul", [x, codes, scales], ["logits"], domain=kernels.DOMAIN)
                return
            b.op_outputs("MatMulNBits", [x, codes, scales], ["logits"], domain="com.microsoft", K=k,
                         N=self.packed.config["vocab_size"], bits=self.table_bits, block_size=TABLE_BLOCK,
                         accuracy_level=TABLE_ACCURACY)
            return
        table = name if name == "embed.weight" else self.table(name)  # a tied table is stored once
        logits = b.op("MatMul", [x, b.op("Transpose", [self.as_float(table)], perm=[1, 0])])
        b.nodes.append(helper.make_node("Identity", [logits], ["logits"]))

    def qkv_bias(self, qkv: str, p: str) -> str:
        """Qwen2's full-precision q/k/v biases, one Add over the fused projection."""
        names = [f"{p}.{n}.bias" for n in ("q_proj", "k_proj", "v_proj")]
        if names[0] not in self.packed.dense:
            return qkv
        return self.b.op("Add", [qkv, self.b.const(np.concatenate([self.packed.dense[n] for n in names]), f"{p}.qkv_bias")])

    def head_norms(self, qkv: str, p: str) -> list[str]:
        """GroupQueryAttention's query, key and value: packed in one tensor, or apart with Qwen3's
        RMSNorm over each head of q and k (before the rotary that GroupQueryAttention applies), as
        onnxruntime-genai's builder emits them."""
        if not self.packed.config.get("qk_norm"):
            return [qkv, "", ""]
        b, width, kv_width = self.b, self.n_head * self.head_dim, self.n_kv * self.head_dim
        q, k, v = b.op_outputs("Split", [qkv, b.const(np.array([width, kv_width, kv_width], dtype=np.int64))], 3, axis=-1)
        heads, joined = b.const(np.array([0, 0, -1, self.head_dim], dtype=np.int64)), b.const(np.array([0, 0, -1], dtype=np.int64))
        return [b.op("Reshape", [self.norm(b.op("Reshape", [x, heads]), f"{p}.{name}"), joined])
                for x, name in ((q, "q_norm"), (k, "k_norm"))] + [v]

    def attention(self, x: str, i: int, positions: Positions) -> str:
        b, p = self.b, f"blocks.{i}.attn"
        qkv = self.linear(x, [f"{p}.q_proj", f"{p}.k_proj", f"{p}.v_proj"], f"{p}.qkv_proj")
        attn = b.op_outputs(
            "GroupQueryAttention",
            [*self.head_norms(self.qkv_bias(qkv, p), p), f"past_key.{i}", f"past_value.{i}",
             positions.seqlens_k, positions.total, *positions.rotary],
            [f"{p}.gqa", f"present_key.{i}", f"present_value.{i}"], domain="com.microsoft",
            num_heads=self.n_head, kv_num_heads=self.n_kv, scale=1.0 / math.sqrt(self.head_dim),
            do_rotary=1, rotary_interleaved=0,
        )[0]
        return self.linear(self.sub_norm(attn, f"{p}.sub_norm"), [f"{p}.o_proj"], f"{p}.o_proj")

    def feed_forward(self, x: str, i: int) -> str:
        b, p = self.b, f"blocks.{i}.ffn"
        gate_up = self.linear(x, [f"{p}.gate_proj", f"{p}.up_proj"], f"{p}.gate_up_proj")
        down = self.packed.linears.get(f"{p}.down_proj")
        if not self.packed.config["sub_norm"]:  # SwiGLU in the kernel, where down_proj runs on one of ours
            if self.variant in kernels.KERNEL_VARIANTS and down is not None:
                return b.bit_linear(gate_up, [down], self.variant, f"{p}.down_proj", gated=True)
            if b.int4_kernel and down is None:
                weight = quantize_int4(self.packed.dense[f"{p}.down_proj.weight"])
                return b.matmul_int4(gate_up, weight, f"{p}.down_proj", gated=True)
        gate, up = b.op_outputs("Split", [gate_up], 2, axis=-1, num_outputs=2)
        hidden = b.op("Mul", [b.op("Mul", [gate, b.op("Sigmoid", [gate])]), up])
        return self.linear(self.sub_norm(hidden, f"{p}.sub_norm"), [f"{p}.down_proj"], f"{p}.down_proj")

    def positions(self) -> Positions:
        """What GroupQueryAttention places tokens by: per sequence, its length - 1 (int32) from the
        attention mask, the total length, and the rotary cos/sin tables (half a head wide)."""
        b, half = self.b, self.head_dim // 2
        lengths = b.op("ReduceSum", ["attention_mask", b.const([1])], keepdims=0)
        seqlens_k = b.op("Cast", [b.op("Sub", [lengths, b.const(np.int64(1))])], to=TensorProto.INT32)
        total = b.op("Cast", [b.op("Squeeze", [b.op("Shape", ["attention_mask"], start=1, end=2)])], to=TensorProto.INT32)
        cos = b.const(np.ascontiguousarray(self.packed.dense["rope_cos"][:, :half]), "rope_cos")
        sin = b.const(np.ascontiguousarray(self.packed.dense["rope_sin"][:, :half]), "rope_sin")
        return Positions(seqlens_k, total, (cos, sin))

    def residual(self, x: str, name: str) -> str:
        self.b.nodes.append(helper.make_node("Identity", [x], [name], name=name))
        return name

    def build(self) -> onnx.ModelProto:
        cfg, b = self.packed.config, self.b
        inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
                  helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "kept", cfg["vocab_size"]])]
        for i in range(cfg["n_layer"]):
            for kind in ("key", "value"):
                inputs.append(helper.make_tensor_value_info(f"past_{kind}.{i}", TensorProto.FLOAT, ["batch", self.n_kv, "past", self.head_dim]))
                outputs.append(helper.make_tensor_value_info(f"present_{kind}.{i}", TensorProto.FLOAT, ["batch", self.n_kv, "total", self.head_dim]))
        inputs.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, [1]))
        b.const(np.array([0], dtype=np.int64), LOGITS_TO_KEEP)  # an input with an initializer: its default
        positions = self.positions()
        names = iter(residual_names(cfg["n_layer"]))
        x = self.residual(self.embedding(), next(names))
        for i in range(cfg["n_layer"]):
            x = self.residual(b.op("Add", [x, self.attention(self.norm(x, f"blocks.{i}.attn_norm"), i, positions)]), next(names))
            x = self.residual(b.op("Add", [x, self.feed_forward(self.norm(x, f"blocks.{i}.ffn_norm"), i)]), next(names))
        kept = b.op("Slice", [x, b.op("Neg", [LOGITS_TO_KEEP]), b.const(np.array([np.iinfo(np.int64).max])), b.const([1])])
        self.lm_head(self.norm(kept, "norm"))
        graph = helper.make_graph(b.nodes, f"bitzero_{self.variant}", inputs, outputs, b.initializers)
        opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
        if any(node.domain == kernels.DOMAIN for node in b.nodes):
            opsets.append(helper.make_opsetid(kernels.DOMAIN, 1))
        return helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION, producer_name="bitzero")


@dataclass(frozen=True)
class Positions:
    """GroupQueryAttention's position inputs: tensor names of seqlens_k, the total length and the rotary tables."""

    seqlens_k: str
    total: str
    rotary: tuple[str, str]


def build_graph(packed: PackedModel, variant: str, table_bits: int | None = None) -> onnx.ModelProto:
    """The model as one ONNX graph with past/present key-value inputs and outputs; ``table_bits``
    (4 or 8; 0: float) overrides the variant's embedding/lm_head format (``TABLE_BITS``)."""
    check_variant(packed.config, variant)
    missing = [f"blocks.{i}.{n}" for i in range(packed.config["n_layer"]) for n in PROJECTIONS
               if f"blocks.{i}.{n}" not in packed.linears and f"blocks.{i}.{n}.weight" not in packed.dense]
    if missing:
        raise ValueError(f"the packed model lacks {len(missing)} projections, e.g. {missing[0]}")
    model = _GraphWriter(packed, variant, table_bits).build()
    _check(model)
    return model


def _check(model: onnx.ModelProto) -> None:
    """onnx's full check, with onnxruntime's SimplifiedLayerNormalization (a contrib op that lives in
    the default domain, unknown to onnx) checked as a custom-domain op, i.e. by its wiring alone."""
    checked = copy.deepcopy(model)
    for node in checked.graph.node:
        if node.op_type == "SimplifiedLayerNormalization":
            node.domain = "com.microsoft"
    onnx.checker.check_model(checked, full_check=True)
