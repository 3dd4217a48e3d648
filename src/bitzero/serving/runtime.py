"""The serving runtime: an exported bundle run by onnxruntime, with sampling in numpy. No torch.

``BundleRuntime.load(bundle_dir, variant)`` checks the bundle (manifest, checksums, tokenizer
against config, graph inputs against config) and opens one onnxruntime session, on the CUDA
provider when onnxruntime offers it, else on the CPU; ``provider`` says which one runs.
``stream()`` generates with the KV cache: the prompt in one call, then one token a call, and ends
a reply at any of ``tokenizer.stop_ids``; the context is the config's ``block_size``. The cache
holds ``n_kv_head`` heads per layer (grouped-query attention).

On the CPU, where onnxruntime-genai is installed and the bundle has the variant's genai config,
generation runs in og.Generator (``engine`` is "genai"): the KV cache stays in one buffer in C++
instead of numpy arrays copied every step; sampling, penalties and stops stay the ones below, so
replies are the same (a graph on our kernels, the manifest's ``kernels``, only where
onnxruntime-genai may load the library, ``kernels.genai_library``; elsewhere it runs on the session
below). ``forward`` (parity, held-out NLL, ``use_cache=False``) always runs the onnxruntime session.

Loaded with ``slots`` > 1 (the service), a bundle whose graph shares its KV cache in place (one
with a genai config) decodes up to ``slots`` replies together in batched steps on the CPU
(``engine`` is "batched", `bitzero.serving.batch`), with the same token choice per reply.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from bitzero import kernels
from bitzero.serving.batch import Batcher, keeps_last
from bitzero.serving.bundle import LOGITS_TO_KEEP, BundleError, head_size, read_manifest, verify_file
from bitzero.serving.genai import AVAILABLE as genai_available
from bitzero.serving.genai import GenaiModel
from bitzero.serving.sampling import GREEDY, UNSTEERED, Picker, Sampling, Steering
from bitzero.text.tokenizer import Tokenizer, TokenizerError

__all__ = ["BundleError", "BundleRuntime", "Chunk", "default_providers"]

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
FinishReason = Literal["stop", "length"]
INCOMPLETE = "\ufffd"  # what decoding shows for the first bytes of a character still to come
MASK = "attention_mask"


@dataclass(frozen=True)
class Chunk:
    """A piece of generated text and the token ids behind it; the last one has a finish reason."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason | None


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it (unsupported nodes fall back to CPU)."""
    return [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]


class BundleRuntime:
    """One loaded bundle variant: session, tokenizer and generation."""

    def __init__(
        self, session: ort.InferenceSession, manifest: dict[str, Any], tokenizer: Tokenizer, variant: str,
        genai: GenaiModel | None = None, slots: int = 1,
    ) -> None:
        self._session = session
        self._genai = genai
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.variant = variant
        self.provider: str = session.get_providers()[0]
        self.model_id: str = manifest["model_id"]
        config = manifest["config"]
        self.context_length: int = int(config["block_size"])
        self._n_layer = int(config["n_layer"])
        self._kv_shape = (1, int(config["n_kv_head"]), 0, head_size(config))
        self._stop_ids = frozenset(tokenizer.stop_ids)
        self._outputs = [o.name for o in session.get_outputs()]
        self._keeps_last = keeps_last(session)
        self.engine = "genai" if genai is not None else "onnxruntime"
        self._batcher = None
        if slots > 1 and self.provider == CPU:
            self._batcher = Batcher(session, self._n_layer, (self._kv_shape[1], self.context_length, self._kv_shape[3]),
                                    self._stop_ids, slots)
            self.engine = "batched"
        self.slots = slots if self._batcher is not None else 1

    @property
    def reused_prompt_tokens(self) -> int:
        """Prompt tokens the batched engine copied from its prefix cache instead of running (0 elsewhere)."""
        return self._batcher.reused_tokens if self._batcher is not None else 0

    @classmethod
    def load(
        cls,
        bundle_dir: str | Path,
        variant: str | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        slots: int = 1,
    ) -> BundleRuntime:
        """Open a bundle (``variant`` None: the manifest's default, ternary or nbits for a student, int4
        for a teacher; a ternary graph is served by the bundle's nbits one where our kernel is not built
        here, ``variant`` says which); any missing, corrupt or mismatched part raises BundleError.
        ``slots`` > 1: up to that many replies are decoded together (`Batcher`, on the CPU provider)."""
        bundle_dir = Path(bundle_dir)
        manifest = read_manifest(bundle_dir)
        variants = manifest["variants"]
        variant = kernels.servable(variant or manifest.get("default_variant") or next(iter(variants)), variants)
        if variant not in variants:
            raise BundleError(f"bundle {bundle_dir} has no {variant!r} variant (it has: {', '.join(sorted(variants))})")
        tokenizer_path = verify_file(bundle_dir, manifest["tokenizer"])
        try:
            tokenizer = Tokenizer.load(tokenizer_path)
        except (TokenizerError, OSError, ValueError) as exc:
            raise BundleError(f"bundle tokenizer {tokenizer_path} cannot be read: {exc}") from exc
        vocab = int(manifest["config"]["vocab_size"])
        if tokenizer.vocab_size != vocab:
            raise BundleError(
                f"bundle {bundle_dir} is mismatched: the tokenizer has {tokenizer.vocab_size} tokens, the model {vocab}"
            )
        needs_kernels = variant in manifest.get("kernels", kernels.KERNEL_VARIANTS)
        if needs_kernels and kernels.library_path() is None:
            raise BundleError(f"the {variant} graph of bundle {bundle_dir} runs on BitZero's kernels, which are not built here: "
                              "build them (python -m bitzero.kernels.build, part of make setup) or export the bundle again")
        model_path = verify_file(bundle_dir, variants[variant])
        options = ort.SessionOptions()
        options.log_severity_level = 3
        kernels.register(options)
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=list(providers or default_providers())
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        genai = None
        genai_entry = manifest.get("genai", {}).get(variant)
        kernel_ok = not needs_kernels or kernels.genai_library() is not None
        if genai_available and genai_entry and session.get_providers()[0] == CPU and kernel_ok:
            verify_file(bundle_dir, genai_entry)
            try:
                genai = GenaiModel(model_path.parent, threads)
            except Exception as exc:  # onnxruntime-genai raises plain RuntimeErrors
                raise BundleError(f"onnxruntime-genai cannot load {model_path.parent}: {exc}") from exc
        runtime = cls(session, manifest, tokenizer, variant, genai, slots if genai_entry else 1)
        runtime._check_signature(model_path)
        return runtime

    def _check_signature(self, model_path: Path) -> None:
        expected = {"input_ids", MASK} | {f"past_{k}.{i}" for i in range(self._n_layer) for k in ("key", "value")}
        got = {i.name for i in self._session.get_inputs()}  # LOGITS_TO_KEEP, having a default, is not among them
        if got != expected:
            raise BundleError(f"{model_path} does not match the bundle config: inputs {sorted(got ^ expected)} differ")

    # -- model calls -----------------------------------------------------------------------------

    def _empty_cache(self) -> dict[str, np.ndarray]:
        empty = np.zeros(self._kv_shape, dtype=np.float32)
        return {f"past_{k}.{i}": empty for i in range(self._n_layer) for k in ("key", "value")}

    def forward(self, ids: Sequence[int], cache: dict[str, np.ndarray] | None = None, *,
                last_only: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits (len(ids), vocab) for ``ids`` after the cached positions, and the new cache;
        ``last_only``: the last position's (1, vocab), where the graph can skip the others."""
        feeds = dict(cache or self._empty_cache())
        feeds["input_ids"] = np.asarray([list(ids)], dtype=np.int64)
        feeds[MASK] = np.ones((1, feeds["past_key.0"].shape[2] + len(ids)), dtype=np.int64)
        if last_only and self._keeps_last:
            feeds[LOGITS_TO_KEEP] = np.ones(1, dtype=np.int64)
        results = dict(zip(self._outputs, self._session.run(None, feeds), strict=True))
        present = {
            f"past_{k}.{i}": results[f"present_{k}.{i}"] for i in range(self._n_layer) for k in ("key", "value")
        }
        return results["logits"][0], present

    def token_ids(
        self, prompt_ids: Sequence[int], *, max_tokens: int, sampling: Sampling = GREEDY,
        steering: Steering = UNSTEERED, use_cache: bool = True,
    ) -> Iterator[int]:
        """New token ids, one at a time, up to ``max_tokens`` or the context; stop ids included.

        Without the cache every step recomputes the whole sequence (a check of the cached path).
        ``steering``: what the conversation adds (earlier replies, barred phrases, recalled words, opening).
        """
        prompt = self._check_prompt(prompt_ids, max_tokens)
        budget = min(max_tokens, self.context_length - len(prompt))
        picker = Picker(prompt, sampling, steering)
        if use_cache and self._batcher is not None:
            yield from self._batcher.tokens(prompt, budget, picker)
            return
        steps = self._last_logits(picker.sequence, budget, use_cache)
        last = next(steps)
        for step in range(budget):
            token = picker.pick(last)
            yield token
            if token in self._stop_ids or step == budget - 1:
                return
            last = steps.send(token)

    def _last_logits(self, sequence: list[int], budget: int, use_cache: bool) -> Generator[np.ndarray, int, None]:
        """The last position's logits for ``sequence``, then again after each token sent (which the
        caller has appended to ``sequence``): in onnxruntime-genai where loaded, else ``forward``."""
        if use_cache and self._genai is not None:
            session = self._genai.session(sequence, len(sequence) + budget)
            token = yield session.logits
            while True:
                token = yield session.advance(token)
        logits, cache = self.forward(sequence, last_only=True)
        while True:
            token = yield logits[-1]
            logits, cache = self.forward([token] if use_cache else sequence, cache if use_cache else None, last_only=True)

    def _check_prompt(self, prompt_ids: Sequence[int], max_tokens: int) -> list[int]:
        prompt = [int(i) for i in prompt_ids]
        if not prompt:
            raise ValueError("the prompt needs at least one token")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        vocab = self.tokenizer.vocab_size
        if min(prompt) < 0 or max(prompt) >= vocab:
            raise ValueError(f"prompt token ids must lie in [0, {vocab})")
        if len(prompt) >= self.context_length:
            raise ValueError(
                f"the prompt has {len(prompt)} tokens; the model's context holds {self.context_length} "
                "including the reply"
            )
        return prompt

    # -- text streaming ----------------------------------------------------------------------------

    def stream(
        self, prompt_ids: Sequence[int], *, max_tokens: int, sampling: Sampling = GREEDY,
        steering: Steering = UNSTEERED,
    ) -> Iterator[Chunk]:
        """Generated text in pieces; the last chunk says "stop" (a stop id or string) or "length".

        Text is held back while it could still be the start of a stop string (stop strings are
        never emitted) or while it ends in an incomplete UTF-8 sequence (byte-level BPE).
        """
        stops = list(sampling.stop)
        generated: list[int] = []
        pending: list[int] = []
        emitted = 0
        finish: FinishReason = "length"
        for token in self.token_ids(prompt_ids, max_tokens=max_tokens, sampling=sampling, steering=steering):
            if token in self._stop_ids:
                finish = "stop"
                break
            generated.append(token)
            pending.append(token)
            text = self.tokenizer.decode(generated, skip_special=True)
            cut = min((i for i in (text.find(s, emitted) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                yield Chunk(text[emitted:cut], tuple(pending), "stop")
                return
            safe = _safe_length(text, stops)
            if safe > emitted:
                yield Chunk(text[emitted:safe], tuple(pending), None)
                emitted, pending = safe, []
        text = self.tokenizer.decode(generated, skip_special=True)
        yield Chunk(text[emitted:], tuple(pending), finish)


def _safe_length(text: str, stops: list[str]) -> int:
    """How much of ``text`` can be sent now: not a trailing partial character, nor a prefix of a stop string."""
    safe = len(text.rstrip(INCOMPLETE))
    held = max((k for s in stops for k in range(1, len(s)) if text[:safe].endswith(s[:k])), default=0)
    return safe - held
