"""Packed weights in plain numpy: ternary 2-bit codes (4 per byte) + one fp32 scale per ternary row,
and the 4-bit block format of a full-precision matrix.

A ternary code q in {-1, 0, +1} is stored as q + 2 in {1, 2, 3}, four codes per byte with the
first code in the lowest two bits. That is exactly the layout of onnxruntime's MatMulNBits with
bits=2 and its default zero point 2, so the ONNX builder reuses the bytes as they are (after
padding K to a whole block). A per-tensor scale (BitLinear's default) is stored as the same value on
every row: one format whatever the model's ``per_row_scale``, at 32 / K extra bits a weight. Critical output channels, embeddings, norms and lm_head keep full
precision. The compact checkpoint is one safetensors file (numpy, no torch needed to read it) with
the model config in its metadata.

``quantize_int4`` is the other format: 4-bit codes in blocks of 32 along K spanning each block's
[min, max], with a scale and a min per block, both fp16 values (GGUF Q4_1 stores them so), for the
teacher's linears. The graph stores them one of two ways: for BitZero's Int4MatMul kernel
(``Int4Weight.kernel_blocks``), codes with an fp16 scale and min a block, 4 + 32/32 = 5 bits a
weight; for onnxruntime's MatMulNBits (where the kernels are not built), its bits=4 layout with fp32
scales and float zero points, 6 bits. SmolLM2's GGUF weights are Q4_1 blocks of 32, and an integer
(4-bit) zero point cannot put their grid back, so it rounded every weight again (9% relative weight
error, top-1 agreement with PyTorch 55% on a chat; measured again on 32 chats, held-out NLL +0.2
nats for integer or symmetric blocks), where this format restores them exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bitzero.errors import ExportPackageError

FORMAT = "bitzero-packed"
VERSION = 2
READABLE_VERSIONS = ("1", "2")  # version 1 held one gamma per layer (in the header)
ZERO_CODE = 2  # the stored value of a ternary 0 (MatMulNBits' default zero point for 2 bits)
CODES_PER_BYTE = 4
# Buffers the graph needs but that are not parameters (recomputed from the config by PyTorch).
ROTARY_TABLES = ("rope_cos", "rope_sin")


INT4_BLOCK = 32
INT4_TILE = 16  # rows whose scales and mins Int4MatMul stores side by side
FP16_TINY = float(np.finfo(np.float16).tiny)  # the smallest scale: a constant block's (and no fp16 zero)
INT4_MAX = 15


class PackingError(ExportPackageError, ValueError):
    """Codes outside {-1, 0, 1}, or a packed file that does not hold a complete model."""


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """(N, K) ternary codes -> (N, ceil(K / 4)) uint8; padding codes are stored as zeros (2)."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise PackingError(f"codes must be a 2-D (out, in) matrix, got shape {codes.shape}")
    if codes.size and (codes.min() < -1 or codes.max() > 1 or not np.all(codes == np.round(codes))):
        raise PackingError("ternary codes must be -1, 0 or +1")
    n, k = codes.shape
    padded = np.full((n, -(-k // CODES_PER_BYTE) * CODES_PER_BYTE), ZERO_CODE, dtype=np.uint8)
    padded[:, :k] = (codes.astype(np.int8) + ZERO_CODE).astype(np.uint8)
    quads = padded.reshape(n, -1, CODES_PER_BYTE)
    return (quads[..., 0] | quads[..., 1] << 2 | quads[..., 2] << 4 | quads[..., 3] << 6).astype(np.uint8)


def unpack_codes(packed: np.ndarray, in_features: int) -> np.ndarray:
    """(N, ceil(K / 4)) uint8 -> (N, K) int8 codes in {-1, 0, 1}."""
    packed = np.asarray(packed, dtype=np.uint8)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    stored = (packed[..., None] >> shifts) & 0b11
    codes = stored.reshape(packed.shape[0], -1)[:, :in_features].astype(np.int8) - ZERO_CODE
    if codes.size and codes.min() < -1:
        raise PackingError("packed codes hold the unused value 0 (corrupt data)")
    return codes


KERNEL_BLOCK = 128  # codes per 32-byte block of TernaryMatMul's layout
KERNEL_HALF = 64  # K is padded to a multiple of this: a 16-byte half block may end a row


def kernel_codes(codes: np.ndarray) -> np.ndarray:
    """(N, K) ternary codes -> (N, ceil(K / 64) * 16) uint8 in the layout of our TernaryMatMul kernel
    (bitzero/kernels/ternary_matmul.cc): byte j of 32-byte block b holds k = 128 b + 32 s + j in bits
    2s..2s+1, and of a closing 16-byte half block k = 128 B + 16 s + j, as code + 1 (padding 1, a zero
    weight), so one load unpacks into four vectors that line up with four contiguous loads of int8
    activations."""
    codes = np.asarray(codes)
    n, k = codes.shape
    padded = -(-k // KERNEL_HALF) * KERNEL_HALF
    whole = padded // KERNEL_BLOCK * KERNEL_BLOCK
    stored = np.ones((n, padded), dtype=np.uint8)
    stored[:, :k] = (codes.astype(np.int8) + 1).astype(np.uint8)
    parts = [stored[:, :whole].reshape(n, -1, 4, 32), stored[:, whole:].reshape(n, -1, 4, 16)]
    packed = [(p[:, :, 0] | p[:, :, 1] << 2 | p[:, :, 2] << 4 | p[:, :, 3] << 6).reshape(n, -1) for p in parts]
    return np.ascontiguousarray(np.concatenate(packed, axis=1), dtype=np.uint8)


@dataclass(frozen=True)
class Int4Weight:
    """An (N, K) matrix in MatMulNBits bits=4 layout: blob (N, blocks, 16), two codes a byte, the
    first in the low nibble; fp32 scales and zero points (N, blocks), each scale and min (-zero point
    x scale) an fp16 value."""

    blob: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    in_features: int

    @property
    def nbytes(self) -> int:
        return self.blob.nbytes + self.scales.nbytes + self.zero_points.nbytes

    def dense(self) -> np.ndarray:
        """The dequantized (N, K) float32 weights: (code - zero point) * scale."""
        n, blocks, _ = self.blob.shape
        codes = _nibbles(self.blob.reshape(n, blocks, -1)).astype(np.float32)
        return ((codes - self.zero_points[..., None]) * self.scales[..., None]).reshape(n, -1)[:, : self.in_features]

    def kernel_blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same weights as BitZero's Int4MatMul reads them (ternary_matmul.cc): codes uint8 (N,
        blocks, 16), byte j of a block holding code j in its low nibble and code 16 + j in its high
        one; fp16 scales and mins (ceil(N / 16), blocks, 16), sixteen rows side by side (the kernel
        adds the mins sixteen rows at once). Blocks are padded to an even count (zero weights): the
        kernel reads them in pairs."""
        n, blocks, _ = self.blob.shape
        codes = _nibbles(self.blob).reshape(n, blocks, INT4_BLOCK).astype(np.uint8)
        even = blocks % 2
        packed = np.pad(codes[..., :16] | codes[..., 16:] << 4, ((0, 0), (0, even), (0, 0)))

        def tiles(values: np.ndarray) -> np.ndarray:
            values = np.pad(values.astype(np.float16), ((0, -n % INT4_TILE), (0, even)))
            return np.ascontiguousarray(values.reshape(-1, INT4_TILE, blocks + even).transpose(0, 2, 1))

        return np.ascontiguousarray(packed), tiles(self.scales), tiles(-self.zero_points * self.scales)


def _fp16(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to the nearest fp16 value, as float32; PackingError beyond fp16's range."""
    rounded = values.astype(np.float16)
    if not np.isfinite(rounded).all():
        raise PackingError(f"a 4-bit block's scale or min is beyond fp16's range (largest {np.abs(values).max():.3g})")
    return rounded.astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """(..., B) uint8 -> (..., 2B) values, low nibble first."""
    return np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1)


def _pack_nibbles(values: np.ndarray) -> np.ndarray:
    """(..., 2B) values in [0, 15] -> (..., B) uint8, the first value in the low nibble."""
    values = values.astype(np.uint8)
    return values[..., 0::2] | values[..., 1::2] << 4


def quantize_int4(weight: np.ndarray, block: int = INT4_BLOCK) -> Int4Weight:
    """4-bit codes per block of ``block`` along K: code 0 is the block's min, 15 its max, both
    rounded to fp16 (exact for GGUF's Q4_1 blocks) so that either graph stores the same weights."""
    weight = np.asarray(weight, dtype=np.float32)
    if weight.ndim != 2:
        raise PackingError(f"a 4-bit matrix must be 2-D (out, in), got shape {weight.shape}")
    n, k = weight.shape
    blocks = -(-k // block)
    padded = np.zeros((n, blocks * block), dtype=np.float32)
    padded[:, :k] = weight
    grouped = padded.reshape(n, blocks, block)
    low, high = _fp16(grouped.min(-1)), grouped.max(-1)
    scales = _fp16(np.maximum((high - low) / INT4_MAX, FP16_TINY))
    codes = np.clip(np.round((grouped - low[..., None]) / scales[..., None]), 0, INT4_MAX)
    return Int4Weight(_pack_nibbles(codes), scales, (-low / scales).astype(np.float32), k)


@dataclass(frozen=True)
class TableWeight:
    """An embedding-sized (N, K) table in symmetric ``bits``-bit blocks of ``TABLE_BLOCK`` along K, as
    MatMulNBits (lm_head) and GatherBlockQuantized (embedding) both read it, so a tied table is
    stored once: codes (N, blocks, block * bits / 8) uint8 with their default zero point
    2^(bits - 1), fp32 scales (N, blocks)."""

    codes: np.ndarray
    scales: np.ndarray
    bits: int
    in_features: int

    def dense(self) -> np.ndarray:
        n, blocks, _ = self.codes.shape
        values = self.codes if self.bits == 8 else _nibbles(self.codes)
        centred = values.reshape(n, blocks, -1).astype(np.float32) - (1 << (self.bits - 1))
        return (centred * self.scales[..., None]).reshape(n, -1)[:, : self.in_features]


TABLE_BLOCK = 32


def quantize_table(table: np.ndarray, bits: int) -> TableWeight:
    """Symmetric ``bits``-bit (4 or 8) blocks: code 2^(bits-1) +- round(w / scale), scale = absmax / (2^(bits-1) - 1)."""
    if bits not in (4, 8):
        raise PackingError(f"tables are stored in 4 or 8 bits, not {bits}")
    table = np.asarray(table, dtype=np.float32)
    n, k = table.shape
    blocks = -(-k // TABLE_BLOCK)
    padded = np.zeros((n, blocks * TABLE_BLOCK), dtype=np.float32)
    padded[:, :k] = table
    grouped = padded.reshape(n, blocks, TABLE_BLOCK)
    half = 1 << (bits - 1)
    scales = np.abs(grouped).max(-1) / (half - 1)
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    codes = (np.clip(np.round(grouped / scales[..., None]), 1 - half, half - 1) + half).astype(np.uint8)
    return TableWeight(codes if bits == 8 else _pack_nibbles(codes), scales, bits, k)


@dataclass(frozen=True)
class RowTable:
    """An embedding-sized (N, K) table in int8 with one scale a row (scale = absmax / 127), as our
    TableMatMul (lm_head) reads it and Gather + Mul (embedding) dequantize it: 8.0 bits a weight
    (its cost in NLL and speed: ``bitzero.export.graph``'s notes)."""

    codes: np.ndarray  # (N, K) int8
    scales: np.ndarray  # (N,) float32

    def dense(self) -> np.ndarray:
        return self.codes.astype(np.float32) * self.scales[:, None]


def quantize_table_rows(table: np.ndarray) -> RowTable:
    """Symmetric int8 rows: code round(w / scale) in [-127, 127], scale = the row's absmax / 127."""
    table = np.asarray(table, dtype=np.float32)
    scales = np.abs(table).max(-1) / 127.0
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    return RowTable(np.clip(np.round(table / scales[:, None]), -127, 127).astype(np.int8), scales)


@dataclass
class PackedLinear:
    """One BitLinear: ternary rows as packed codes with their scales, critical rows as floats.

    ``critical_mask`` (out,) marks the full-precision output channels; ``codes`` and ``gamma`` hold
    only the other rows, in order (row i's weights are codes[i] * gamma[i]), and ``critical_weight``
    only the critical rows, in order.
    """

    in_features: int
    critical_mask: np.ndarray  # (N,) bool
    codes: np.ndarray  # (N_ternary, ceil(K / 4)) uint8
    gamma: np.ndarray  # (N_ternary,) float32
    critical_weight: np.ndarray  # (N_critical, K) float32

    def __post_init__(self) -> None:
        self.gamma = np.asarray(self.gamma, dtype=np.float32).reshape(-1)
        if self.gamma.shape != (self.codes.shape[0],):
            raise PackingError(f"{self.codes.shape[0]} ternary rows need as many scales, got {self.gamma.shape[0]}")

    @property
    def out_features(self) -> int:
        return int(self.critical_mask.shape[0])

    @property
    def n_ternary_weights(self) -> int:
        return int(self.codes.shape[0]) * self.in_features

    def ternary(self) -> np.ndarray:
        """(N_ternary, K) int8 codes."""
        return unpack_codes(self.codes, self.in_features)

    def dense(self) -> np.ndarray:
        """The effective (N, K) float32 weights: codes * gamma, critical rows as stored."""
        weight = np.zeros((self.out_features, self.in_features), dtype=np.float32)
        weight[~self.critical_mask] = self.ternary().astype(np.float32) * self.gamma[:, None]
        weight[self.critical_mask] = self.critical_weight
        return weight


@dataclass
class PackedModel:
    """A whole model: its config, the packed BitLinears and every full-precision tensor."""

    config: dict[str, Any]
    linears: dict[str, PackedLinear]
    dense: dict[str, np.ndarray]  # embeddings, norms, lm_head, rotary tables, full-precision linears
    metadata: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, float]:
        """Bits per weight (ternary layers alone, their codes and row scales, and the whole model) and
        bytes against fp32."""
        ternary_weights = sum(layer.n_ternary_weights for layer in self.linears.values())
        ternary_bytes = sum(layer.codes.nbytes + layer.gamma.nbytes for layer in self.linears.values())
        critical = sum(layer.critical_weight.size for layer in self.linears.values())
        critical_bytes = sum(layer.critical_weight.nbytes for layer in self.linears.values())
        weights = [t for name, t in self.dense.items() if name not in ROTARY_TABLES]
        dense_params = sum(t.size for t in weights)
        dense_bytes = sum(t.nbytes for t in weights)
        params = ternary_weights + critical + dense_params
        total_bytes = ternary_bytes + critical_bytes + dense_bytes
        return {
            "parameters": params,
            "ternary_weights": ternary_weights,
            "critical_weights": critical,
            "bits_per_weight_ternary": 8 * ternary_bytes / max(ternary_weights, 1),
            "bits_per_weight_linear": 8 * (ternary_bytes + critical_bytes) / max(ternary_weights + critical, 1),
            "bits_per_weight_model": 8 * total_bytes / max(params, 1),
            "tensor_bytes": total_bytes,
            "fp32_tensor_bytes": 4 * params,
        }


def save_packed(packed: PackedModel, path: str | Path) -> Path:
    """One safetensors file; written beside the target and renamed, so a crash leaves no half file."""
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {f"dense/{k}": np.ascontiguousarray(v) for k, v in packed.dense.items()}
    layers: dict[str, dict[str, Any]] = {}
    for name, layer in packed.linears.items():
        tensors[f"linear/{name}/codes"] = np.ascontiguousarray(layer.codes)
        tensors[f"linear/{name}/critical_mask"] = layer.critical_mask.astype(np.uint8)
        tensors[f"linear/{name}/critical_weight"] = np.ascontiguousarray(layer.critical_weight)
        tensors[f"linear/{name}/gamma"] = layer.gamma
        layers[name] = {"in_features": layer.in_features}
    header = {"config": packed.config, "layers": layers, "metadata": packed.metadata}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(staging), metadata={"format": FORMAT, "version": str(VERSION), "header": json.dumps(header)})
    staging.replace(path)
    return path


def load_packed(path: str | Path) -> PackedModel:
    """Read a file written by ``save_packed``; a foreign or incomplete file raises PackingError."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - the handle is not iterable
    except Exception as exc:  # OSError, or safetensors' SafetensorError (a bare Exception subclass)
        raise PackingError(f"cannot read packed model {path}: {exc}") from exc
    if meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS:
        raise PackingError(f"{path} is not a {FORMAT} v{'/v'.join(READABLE_VERSIONS)} file "
                           f"(metadata: {meta.get('format')!r} v{meta.get('version')})")
    header = json.loads(meta["header"])
    try:
        linears = {
            name: PackedLinear(
                in_features=int(info["in_features"]),
                critical_mask=tensors[f"linear/{name}/critical_mask"].astype(bool),
                codes=tensors[f"linear/{name}/codes"],
                gamma=_gamma(tensors, name, info),
                critical_weight=tensors[f"linear/{name}/critical_weight"],
            )
            for name, info in header["layers"].items()
        }
    except KeyError as exc:
        raise PackingError(f"{path} misses tensor {exc}") from exc
    dense = {key.removeprefix("dense/"): value for key, value in tensors.items() if key.startswith("dense/")}
    return PackedModel(header["config"], linears, dense, header.get("metadata", {}))


def _gamma(tensors: dict[str, np.ndarray], name: str, info: dict[str, Any]) -> np.ndarray:
    """A layer's row scales; a version-1 file's one gamma (a hex float in the header) on every row."""
    if "gamma" in info:
        return np.full(tensors[f"linear/{name}/codes"].shape[0], float.fromhex(info["gamma"]), dtype=np.float32)
    return tensors[f"linear/{name}/gamma"]
