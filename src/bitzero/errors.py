"""The exception bases: one for BitZero, one under it for each package.

A caller can catch what BitZero, or one of its packages, raises on purpose without also catching
the bugs (a bare ValueError or KeyError) that should still show their traceback. Every error
BitZero raises on purpose derives from its package's base here and keeps the builtin base it had
(`class TokenizerError(TextError, ValueError)`), so callers that catch `ValueError` or
`RuntimeError` still do. Errors of top-level modules (`privacy_purge`) derive from `BitZeroError`
directly. Private control-flow classes (a leading underscore) are exempt. This module imports
nothing, so the torch-free and Kedro-free parts can use it.
"""

from __future__ import annotations


class BitZeroError(Exception):
    """Every error BitZero raises on purpose; the CLI prints its message without a traceback."""


class DataError(BitZeroError):
    """`bitzero.data`: records, readers, validation, augmentation and the seed set."""


class TextError(BitZeroError):
    """`bitzero.text`: the tokenizer and the vocabulary check."""


class LanguageModelError(BitZeroError):
    """`bitzero.model`: building, loading and importing the model (not the served bundle)."""


class TrainingError(BitZeroError):
    """`bitzero.train`: the training loop, batch sizing and DDP."""


class SelfPlayError(BitZeroError):
    """`bitzero.selfplay`: tasks, the allow-list, the sandbox and the loop."""


class ExportPackageError(BitZeroError):
    """`bitzero.export` and `bitzero.kernels`: packing, ONNX graphs, the ternary kernel, parity and promotion."""


class ServingError(ExportPackageError):
    """`bitzero.serving`: reading an exported bundle and running it (a bundle is the export's format,
    so callers that catch the export's errors catch these too)."""


class CompanionError(BitZeroError):
    """`bitzero.companion`: memory, embeddings, emotion, privacy and feedback."""


class ServiceError(BitZeroError):
    """`bitzero.service`: settings, served models, chat and the per-user gates."""
