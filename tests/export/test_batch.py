"""Continuous batching (bitzero.serving.batch): replies decoded together are the replies decoded alone,
and a reply that is dropped frees its row."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from bitzero.kernels import library_path
from bitzero.serving.batch import MIN_REUSE, lazy_zeros, shared_length
from bitzero.serving.bundle import MANIFEST
from bitzero.serving.runtime import BundleRuntime
from bitzero.serving.sampling import Sampling

TEXTS = ["hello, how are you?", "hi", "tell me about your day and the weather today, please", "ok",
         "what is 2 + 2?", "good morning to you", "bye now"]


def _prompts(runtime: BundleRuntime) -> list[list[int]]:
    return [runtime.tokenizer.encode_chat([{"role": "user", "content": t}], add_generation_prompt=True) for t in TEXTS]


def _together(runtime: BundleRuntime, prompts: list[list[int]], budgets: list[int] | None = None,
              **options: object) -> list[list[int]]:
    """Every prompt's tokens from its own thread, all at once (``budgets``: each one's max_tokens)."""
    replies: list[list[int]] = [[] for _ in prompts]
    errors: list[BaseException] = []

    def reply(index: int) -> None:
        try:
            if budgets is not None:
                options["max_tokens"] = budgets[index]
            replies[index] = list(runtime.token_ids(prompts[index], **options))  # type: ignore[arg-type]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reply, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return replies


EVERY_GRAPH = [("bundle", "nbits"), ("teacher_bundle", "int4"),
               pytest.param("bundle", "ternary", marks=pytest.mark.skipif(library_path() is None, reason="the kernel library is not built"))]


@pytest.mark.parametrize(("which", "variant"), EVERY_GRAPH)
@pytest.mark.parametrize("sampling", [Sampling(), Sampling(temperature=0.9, top_p=0.8, seed=3, frequency_penalty=0.5,
                                                           repeat_ngram=3)])
def test_concurrent_replies_are_the_sequential_ones(request: pytest.FixtureRequest, which: str, variant: str,
                                                    sampling: Sampling) -> None:
    folder: Path = request.getfixturevalue(which)
    alone = BundleRuntime.load(folder, variant)
    batched = BundleRuntime.load(folder, variant, slots=3)  # fewer rows than replies: rows are reused
    assert (batched.engine, batched.slots) == ("batched", 3)
    prompts = _prompts(alone)
    options = {"max_tokens": 20, "sampling": sampling}
    sequential = [list(alone.token_ids(p, **options)) for p in prompts]  # type: ignore[arg-type]
    assert _together(batched, prompts, **options) == sequential
    assert any(len(r) > 1 for r in sequential)


@pytest.mark.parametrize(("which", "variant"), EVERY_GRAPH)
def test_a_prompt_that_starts_like_the_last_one_runs_only_the_rest(request: pytest.FixtureRequest, which: str,
                                                                   variant: str) -> None:
    """The companion's persona starts every prompt: its keys and values are copied from the last
    prompt's, not computed again, and every reply is the one a whole run gives."""
    folder: Path = request.getfixturevalue(which)
    alone = BundleRuntime.load(folder, variant)
    batched = BundleRuntime.load(folder, variant, slots=2)
    persona = {"role": "system", "content": "You are BitZero, a warm and caring companion. You listen closely."}
    prompts = [alone.tokenizer.encode_chat([persona, {"role": "user", "content": t}], add_generation_prompt=True)
               for t in TEXTS[:4]]
    shared = shared_length(prompts[0], prompts[1], len(prompts[0]))
    assert shared >= MIN_REUSE
    options = {"max_tokens": 20, "sampling": Sampling()}
    expected = [list(alone.token_ids(p, **options)) for p in prompts]  # type: ignore[arg-type]
    got = [list(batched.token_ids(p, **options)) for p in prompts]  # type: ignore[arg-type]  # one after another
    assert got == expected
    assert batched.reused_prompt_tokens >= 3 * shared  # the three after the first
    assert alone.reused_prompt_tokens == 0


def test_a_reply_moved_into_a_freed_row_goes_on_as_it_would(bundle: Path) -> None:
    """The first rows finish first (smaller budgets): the later replies move down into them.

    The batcher admits nothing until all four prompts wait, queued in order, so each lands in its
    row whatever the threads' timing (a slow machine would otherwise admit them one by one)."""
    alone, batched = BundleRuntime.load(bundle), BundleRuntime.load(bundle, slots=4)
    batcher = batched._batcher
    assert batcher is not None
    prompts, budgets = _prompts(alone)[:4], [3, 6, 12, 24]
    sampling = Sampling(temperature=0.9, seed=1)  # no early stop token in the way
    expected = [list(alone.token_ids(p, max_tokens=b, sampling=sampling)) for p, b in zip(prompts, budgets, strict=True)]
    queued, admit, compact, moved = threading.Event(), batcher._admit, batcher._compact, []

    def gated() -> None:
        queued.wait(timeout=60)
        admit()

    def watched() -> None:
        before = list(batcher._rows)
        compact()
        moved.append(before != batcher._rows)

    batcher._admit, batcher._compact = gated, watched  # type: ignore[method-assign]
    replies: list[list[int]] = [[] for _ in prompts]
    threads = [threading.Thread(target=lambda i=i: replies.__setitem__(i, list(batched.token_ids(
        prompts[i], max_tokens=budgets[i], sampling=sampling)))) for i in range(len(prompts))]
    for count, thread in enumerate(threads, start=1):
        thread.start()
        while batcher._waiting.qsize() < count:
            time.sleep(0.001)
    queued.set()
    for thread in threads:
        thread.join(timeout=120)
    assert [row is None for row in batcher._rows] == [True] * 4
    assert replies == expected
    assert any(moved)


def test_a_graph_that_gives_every_positions_logits_replies_alike(bundle: Path) -> None:
    """Bundles exported before ``logits_to_keep`` compute lm_head for every prompt position: the
    batcher takes the last of them, and the replies are the ones a last-only prefill gives."""
    batched = BundleRuntime.load(bundle, slots=2)
    assert batched._batcher is not None and batched._batcher._last_only
    prompts, options = _prompts(batched)[:3], {"max_tokens": 12, "sampling": Sampling()}
    last_only = [list(batched.token_ids(p, **options)) for p in prompts]  # type: ignore[arg-type]
    batched._batcher._last_only = False
    assert [list(batched.token_ids(p, **options)) for p in prompts] == last_only  # type: ignore[arg-type]


def test_streamed_text_and_stops_are_the_same_batched(bundle: Path) -> None:
    alone, batched = BundleRuntime.load(bundle), BundleRuntime.load(bundle, slots=2)
    prompt = _prompts(alone)[0]
    full = "".join(c.text for c in alone.stream(prompt, max_tokens=30))
    stop = Sampling(stop=(full[3:5],))
    assert list(batched.stream(prompt, max_tokens=30, sampling=stop)) == list(alone.stream(prompt, max_tokens=30,
                                                                                         sampling=stop))
    assert list(batched.stream(prompt, max_tokens=7)) == list(alone.stream(prompt, max_tokens=7))


def test_dropped_replies_free_their_rows(bundle: Path) -> None:
    batched = BundleRuntime.load(bundle, slots=2)
    prompts = _prompts(batched)
    dropped = [batched.token_ids(p, max_tokens=200) for p in prompts[:2]]
    for reply in dropped:
        next(reply)
    for reply in dropped:
        reply.close()  # the clients went away after one token each
    # Both rows serve the next replies; these would wait forever if the dropped ones held them.
    again = _together(batched, prompts[2:4], max_tokens=5)
    alone = BundleRuntime.load(bundle)
    assert again == [list(alone.token_ids(p, max_tokens=5)) for p in prompts[2:4]]
    assert batched._batcher is not None and batched._batcher._rows == [None, None]


def test_batching_needs_a_graph_that_shares_its_cache(bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["genai"]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    plain = BundleRuntime.load(copy, slots=4)
    assert (plain.engine, plain.slots) == ("onnxruntime", 1)


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads Linux's /proc")
def test_a_cache_row_costs_the_memory_of_the_tokens_written() -> None:
    """One position written in each of 16 rows of a 25 MB cache tensor: with numpy's 2 MB pages
    this faulted in 16 x 2 MB or more; the pages are 4 KB (3 heads x 16 rows: 192 KB)."""
    cache = lazy_zeros((16, 3, 2048, 64))
    before = _resident_bytes()
    cache[:, :, 0] = 1.0
    grown = _resident_bytes() - before
    assert grown < 4 * 2**20, f"{grown / 2**20:.1f} MB resident for 48 positions"
    assert cache.sum() == 16 * 3 * 64 and not cache[:, :, 1:].any()
