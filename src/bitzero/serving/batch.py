"""Continuous batching: the replies of concurrent conversations decoded together, one step for all.

Decode at this model size is bound by reading the weights once per step, so a step for 16
sequences costs a few times one sequence's, not 16 times. ``Batcher`` owns one worker thread that
runs the bundle's onnxruntime session over a KV cache of ``slots`` rows per layer, shared in place
between past and present (GroupQueryAttention writes each new position into its row, the way
onnxruntime-genai's ``past_present_share_buffer`` does): a new reply's prompt is run alone on its
own row as soon as a row is free, then joins the next batched step; a finished or abandoned reply
frees its row at once. Each row's tokens are chosen by its own `Picker` (sampling, penalties,
repeat guard, random stream), so a reply is the one it would be alone: the same tokens for greedy
decoding, the same random stream for a seed (up to the kernels' rounding, below).

A prompt that starts with the tokens of the last prompt prefilled (the companion's persona starts
every one; what follows it, the emotion note and the memories most relevant to the message, changes
with each message) copies their keys and values from a cache of that prompt and runs only the rest,
so the persona, about two thirds of a new chat's prompt, is not recomputed. Each position's keys and
values depend on the tokens up to it alone, so this is the same computation as a whole run; its
floats are the same too wherever the kernels compute a row the same in a shorter run (tested on the
tiny models; our ternary kernel sums each token in one order for this). onnxruntime's MatMulNBits
does not always: the one prompt of 129 tokens among the conversation eval's 20 prompts (its last row
alone in a block of 128) got logits off by up to 0.56 of a whole run's, and one word of one reply
changed ("I'm glad to help" for "I'm glad of you"). A reply decoded in a batch has the same kind of
difference from one decoded alone: the teacher's 4-bit MatMulNBits gives a row computed with 15
others logits up to 0.46 off its logits alone (the student's ternary graph, the same floats).

The rows in use are always ``[0, n)``: a new reply takes the lowest free row, and when a reply
ends, the highest one moves into its row (its cache copied), so a step computes no idle row. The
cache buffers are allocated zeroed and untouched (the OS maps them lazily), so memory grows with
the tokens held, not with ``slots x context``.

Why not og.Engine (onnxruntime-genai 0.18): for graphs with a contiguous past/present KV cache,
as ours, it is a *static* batch (a request made while a batch runs waits until the whole batch
has finished), and stop strings and per-turn seeds need its dynamic batching, which needs a graph
with a paged KV cache; it hands out tokens, not logits, so OpenAI's frequency/presence penalties
and the repeat guard over earlier replies could not be kept.
"""

from __future__ import annotations

import logging
import mmap
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from bitzero.serving.bundle import LOGITS_TO_KEEP
from bitzero.serving.sampling import Picker

log = logging.getLogger("bitzero.serving")

_END = object()  # a job's queue: token ids, then this (or an exception)
_KEEP_LAST = ort.OrtValue.ortvalue_from_numpy(np.ones(1, dtype=np.int64))
MIN_REUSE = 8  # shared prompt tokens worth copying from the prefix cache rather than running again


def keeps_last(session: ort.InferenceSession) -> bool:
    """Whether the graph takes LOGITS_TO_KEEP (an input with a default is one of onnxruntime's
    overridable initializers, not of its inputs); bundles exported before it compute every position."""
    return LOGITS_TO_KEEP in {i.name for i in session.get_overridable_initializers()}


def lazy_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """float32 zeros whose memory is mapped 4 KB at a time as it is first written. numpy asks Linux
    for 2 MB pages on large arrays, so the first token written to a row of the student's cache
    faulted in and zeroed about 90 MB (every layer's 1.5 MB row whole): 116 ms a new row on the
    2-core EPYC, and a service that had served 16 chats at once held 1.2 GB of cache for a few
    hundred tokens."""
    buffer = mmap.mmap(-1, max(int(np.prod(shape)), 1) * 4)  # anonymous: zero-filled
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # Linux; where THP is "always", not only on request
        buffer.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buffer, dtype=np.float32).reshape(shape)


@dataclass(eq=False)
class _Job:
    prompt: list[int]
    budget: int  # tokens it may still generate
    picker: Picker
    out: queue.SimpleQueue[object] = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False
    length: int = 0  # positions of its row's cache in use


def shared_length(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` have in common, at most ``limit``."""
    n = min(len(a), len(b), limit)
    if n <= 0:
        return 0
    differ = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differ[0]) if differ.size else n


class Batcher:
    """Generates token ids for many replies at once over ``session`` (a bundle graph's I/O:
    input_ids, attention_mask, past/present key and value per layer, logits)."""

    def __init__(self, session: ort.InferenceSession, n_layer: int, kv_shape: tuple[int, int, int],
                 stop_ids: frozenset[int], slots: int) -> None:
        n_kv_head, context, head_dim = kv_shape
        self.slots = slots
        self._session = session
        self._stop_ids = stop_ids
        self._last_only = keeps_last(session)
        self._cache = {f"{kind}.{i}": lazy_zeros((slots, n_kv_head, context, head_dim))
                       for i in range(n_layer) for kind in ("key", "value")}
        self._prefix: list[int] = []  # the last prompt prefilled, whose keys and values _prefix_cache holds
        self._prefix_cache = {name: lazy_zeros((n_kv_head, context, head_dim)) for name in self._cache}
        self._bindings: dict[tuple[int, int], ort.IOBinding] = {}
        self.reused_tokens = 0  # prompt tokens copied from the prefix cache instead of run (a benchmark figure)
        self._rows: list[_Job | None] = [None] * slots
        self._waiting: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._worker = threading.Thread(target=self._serve, name="bitzero-batcher", daemon=True)
        self._worker.start()

    def tokens(self, prompt: Sequence[int], budget: int, picker: Picker) -> Iterator[int]:
        """The reply's token ids as they come (a stop id included, as the last); closing the
        iterator early frees the reply's row before the next step."""
        job = _Job(list(prompt), budget, picker)
        self._waiting.put(job)
        self._wake.set()
        try:
            while (item := job.out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield int(item)  # type: ignore[call-overload]  # the queue holds ints, then _END
        finally:
            job.cancelled = True
            self._wake.set()

    # -- the worker thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            try:
                self._admit()
                if not any(self._rows):
                    self._wake.wait()
                    self._wake.clear()
                    continue
                self._step()
            except Exception as exc:  # a bug here must fail the replies in flight, not hang them
                log.exception("the batcher failed")
                for row in range(self.slots):
                    self._finish(row, exc)

    def _admit(self) -> None:
        """Prompts into free rows, lowest first, each run alone on its row (after the part it shares
        with the last prompt, copied from the prefix cache)."""
        while not self._waiting.empty() and None in self._rows:
            job = self._waiting.get()
            if job.cancelled:
                continue
            row = self._rows.index(None)
            self._rows[row] = job
            prompt = job.prompt
            shared = shared_length(prompt, self._prefix, len(prompt) - 1)  # one token at least runs: its logits
            shared = shared if shared >= MIN_REUSE else 0
            try:
                for name, buffer in self._cache.items():
                    buffer[row, :, :shared] = self._prefix_cache[name][:, :shared]
                logits = self._run(row, row + 1, np.asarray([prompt[shared:]], dtype=np.int64), [len(prompt)])
            except Exception as exc:  # onnxruntime raises its own types; the reply fails, the server goes on
                log.exception("prefill failed")
                self._finish(row, exc)
                continue
            for name, buffer in self._cache.items():  # this prompt becomes the cached one: its own positions only
                self._prefix_cache[name][:, shared : len(prompt)] = buffer[row, :, shared : len(prompt)]
            self._prefix = list(prompt)
            self.reused_tokens += shared
            job.length = len(prompt)
            self._emit(row, logits[0, -1])

    def _step(self) -> None:
        """One decode step for the rows in use; cancelled replies leave first."""
        for row, job in enumerate(self._rows):
            if job is not None and job.cancelled:
                self._finish(row)
        self._compact()
        window = self._rows[: self._rows.index(None) if None in self._rows else self.slots]
        if not window:
            return
        ids = np.asarray([[job.picker.sequence[-1]] for job in window if job], dtype=np.int64)
        lengths = [job.length + 1 for job in window if job]
        try:
            logits = self._run(0, len(window), ids, lengths)
        except Exception as exc:
            log.exception("batched decode step failed")
            for row in range(len(window)):
                self._finish(row, exc)
            return
        for row, job in enumerate(window):
            if job is not None:
                job.length += 1
                self._emit(row, logits[row, -1])

    def _binding(self, lo: int, hi: int) -> ort.IOBinding:
        """A decode step's io binding of rows [lo, hi), kept from step to step: binding the 60 cache
        tensors anew cost about 2 ms of a 13 ms one-row step (student, 2-core EPYC). A prefill's,
        whose logits may be every position's where the graph predates LOGITS_TO_KEEP, is made for
        it and dropped."""
        if (lo, hi) not in self._bindings:
            self._bindings[lo, hi] = self._new_binding(lo, hi)
        return self._bindings[lo, hi]

    def _new_binding(self, lo: int, hi: int) -> ort.IOBinding:
        """Rows [lo, hi) of the cache bound as past and present alike; the logits as onnxruntime allocates them."""
        binding = self._session.io_binding()
        if self._last_only:  # an overridable initializer: io binding takes it as an OrtValue only
            binding.bind_ortvalue_input(LOGITS_TO_KEEP, _KEEP_LAST)
        for name, buffer in self._cache.items():
            rows = buffer[lo:hi]
            shape, address = list(rows.shape), rows.ctypes.data
            binding.bind_input(f"past_{name}", "cpu", 0, np.float32, shape, address)
            binding.bind_output(f"present_{name}", "cpu", 0, np.float32, shape, address)
        binding.bind_output("logits")
        return binding

    def _compact(self) -> None:
        """Rows in use moved down into the free rows below them, so a step computes no idle row
        (a step costs more with every row; a move copies one reply's cache, a few MB)."""
        while None in self._rows:
            free = self._rows.index(None)
            top = max((row for row, job in enumerate(self._rows) if job is not None), default=-1)
            if top < free:
                return
            job = self._rows[top]
            assert job is not None
            for buffer in self._cache.values():
                buffer[free, :, : job.length] = buffer[top, :, : job.length]
            self._rows[free], self._rows[top] = job, None

    def _emit(self, row: int, logits: np.ndarray) -> None:
        job = self._rows[row]
        assert job is not None
        if job.cancelled:
            self._finish(row)
            return
        token = job.picker.pick(logits)
        job.out.put(token)
        job.budget -= 1
        if token in self._stop_ids or job.budget <= 0:
            self._finish(row)

    def _finish(self, row: int, error: BaseException | None = None) -> None:
        job, self._rows[row] = self._rows[row], None
        if job is not None:
            job.out.put(error if error is not None else _END)

    def _run(self, lo: int, hi: int, ids: np.ndarray, lengths: list[int]) -> np.ndarray:
        """Logits (hi - lo, 1, vocab) of rows [lo, hi) fed ``ids`` (of every position where the graph
        cannot keep only the last), each row holding ``lengths`` positions after it (the mask's ones);
        the cache rows are bound as past and present alike."""
        mask = np.zeros((hi - lo, max(lengths)), dtype=np.int64)
        for index, length in enumerate(lengths):
            mask[index, :length] = 1
        binding = self._binding(lo, hi) if ids.shape[1] == 1 else self._new_binding(lo, hi)
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        self._session.run_with_iobinding(binding)
        return binding.get_outputs()[-1].numpy()
