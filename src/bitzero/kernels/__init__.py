"""BitZero's own onnxruntime kernels, in C++: ``TernaryMatMul`` (domain ``com.bitzero``), a BitNet
b1.58 linear layer (per-token int8 activations, 2-bit ternary rows with a scale each, fp16 critical
rows) that onnxruntime has no fast path for; ``TableMatMul``, the student's lm_head over its int8
table; ``Int4MatMul``, the teacher's GGUF Q4_1 blocks (an fp16 scale and min each) on int8
activations, which MatMulNBits runs only with an fp32 side matmul; and ``Int8MatMul``, the teacher's
lm_head over its 8-bit table in MatMulNBits' own layout, faster over several tokens at once
(ternary_matmul.cc says how all four work).

``make``'s set-up builds the library beside this file (``python -m bitzero.kernels.build``); where no
compiler is there or the build fails it says so in one line and the student is served by
onnxruntime's MatMulNBits (the ``nbits`` graph) instead, the teacher's int4 graph exported on
MatMulNBits. Torch-free: the serving side registers the
library into its sessions with ``register``.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DOMAIN = "com.bitzero"
LIBRARY_NAME = "libbitzero_ternary.so"
LIBRARY_ENV = "BITZERO_KERNELS"  # a library path other than the one built beside this file
KERNEL_VARIANTS = ("ternary",)  # bundle variants whose graphs need the library


def library_path() -> Path | None:
    """The built kernel library, or None when it has not been built, its override is missing, or it
    does not load on this machine (another C library, say)."""
    path = Path(os.environ.get(LIBRARY_ENV) or Path(__file__).with_name(LIBRARY_NAME))
    return path if path.is_file() and _loads(str(path), path.stat().st_mtime) else None


@functools.cache
def _loads(path: str, _mtime: float) -> bool:
    try:
        ctypes.CDLL(path)
    except OSError:
        return False
    return True


def register(options: Any) -> bool:
    """Register the kernels into an onnxruntime ``SessionOptions``; False (nothing changed) when the
    library is not built or does not load here."""
    path = library_path()
    if path is None:
        return False
    try:
        options.register_custom_ops_library(str(path))
    except Exception:  # onnxruntime raises its own Fail/RuntimeError types for a library it cannot load
        return False
    return True


def genai_library() -> Path | None:
    """The library where onnxruntime-genai will load it: its ``custom_ops_library`` must lie under the
    working directory (or the model's folder; onnxruntime-genai 0.18 refuses any other path). None
    elsewhere: a ternary graph is then run by the onnxruntime session of BundleRuntime instead."""
    path = library_path()
    if path is None or Path.cwd().resolve() not in path.resolve().parents:
        return None
    return path.resolve()


def servable(variant: str, variants: Iterable[str]) -> str:
    """``variant``, or where it needs the kernel library and that is not built here, the first of the
    bundle's ``variants`` that does not (a ternary bundle carries nbits for this)."""
    if variant not in KERNEL_VARIANTS or library_path() is not None:
        return variant
    return next((v for v in variants if v not in KERNEL_VARIANTS), variant)
