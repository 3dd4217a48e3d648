"""The torch-free runtime: generation with and without the cache, streaming, stop ids, bad bundles."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitzero.kernels import LIBRARY_ENV, genai_library, library_path
from bitzero.serving.bundle import MANIFEST, sha256
from bitzero.serving.genai import AVAILABLE as genai_available
from bitzero.serving.runtime import BundleError, BundleRuntime, Chunk, _safe_length
from bitzero.serving.sampling import Sampling, Steering
from tests.tiny import tiny_tokenizer

PROMPT = [{"role": "user", "content": "hello, how are you?"}]


@pytest.fixture(scope="module")
def runtime(bundle: Path) -> BundleRuntime:
    return BundleRuntime.load(bundle)


def test_load_reports_provider_model_and_context(runtime: BundleRuntime, bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert runtime.provider == "CPUExecutionProvider"  # no GPU build installed here
    assert runtime.model_id == manifest["model_id"] and runtime.model_id.startswith("bitzero-")
    assert runtime.context_length == manifest["config"]["block_size"] == 256
    assert runtime.tokenizer.vocab_size == manifest["config"]["vocab_size"]
    assert runtime.variant == manifest["default_variant"] == ("ternary" if library_path() else "nbits")


def test_a_ternary_bundle_is_served_by_its_nbits_graph_where_the_kernel_is_not_built(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if "ternary" not in json.loads((bundle / MANIFEST).read_text())["variants"]:
        pytest.skip("the kernel library is not built: the bundle has no ternary graph")
    monkeypatch.setenv(LIBRARY_ENV, str(tmp_path / "not-built.so"))
    assert BundleRuntime.load(bundle).variant == BundleRuntime.load(bundle, "ternary").variant == "nbits"


def test_a_teacher_graph_on_our_kernels_where_they_are_not_built_is_refused_with_the_way_out(
    teacher_bundle: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    manifest = json.loads((teacher_bundle / MANIFEST).read_text())
    assert manifest["kernels"] == (["int4"] if library_path() else [])  # the int4 graph on Int4MatMul where built
    if not manifest["kernels"]:
        pytest.skip("the kernel library is not built: the int4 graph runs on MatMulNBits")
    monkeypatch.setenv(LIBRARY_ENV, str(tmp_path / "not-built.so"))
    with pytest.raises(BundleError, match=r"runs on BitZero's kernels, which are not built here: build them \(python -m bitzero.kernels.build"):
        BundleRuntime.load(teacher_bundle, "int4")


def test_generation_runs_in_onnxruntime_genai_where_installed(runtime: BundleRuntime, bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert set(manifest["genai"]) == set(manifest["variants"])
    kernel_ok = runtime.variant != "ternary" or genai_library() is not None
    assert runtime.engine == ("genai" if genai_available and kernel_ok else "onnxruntime")


def test_a_ternary_graph_where_onnxruntime_genai_may_not_load_the_kernel_runs_on_onnxruntime(
    runtime: BundleRuntime, bundle: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if runtime.variant != "ternary":
        pytest.skip("the kernel library is not built: the bundle has no ternary graph")
    prompt = runtime.tokenizer.encode_chat(PROMPT, add_generation_prompt=True)
    kwargs = {"max_tokens": 16, "sampling": Sampling(temperature=0.9, top_p=0.8, seed=3)}
    monkeypatch.chdir(tmp_path)  # onnxruntime-genai loads custom-op libraries from under the working directory only
    elsewhere = BundleRuntime.load(bundle, "ternary")
    assert elsewhere.engine == "onnxruntime"
    assert list(elsewhere.token_ids(prompt, **kwargs)) == list(runtime.token_ids(prompt, **kwargs))


def test_a_bundle_without_a_genai_config_generates_on_the_numpy_path_alike(runtime: BundleRuntime, copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["genai"]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    fallback = BundleRuntime.load(copy)
    assert fallback.engine == "onnxruntime"
    prompt = runtime.tokenizer.encode_chat(PROMPT, add_generation_prompt=True)
    kwargs = {"max_tokens": 16, "sampling": Sampling(temperature=0.9, top_p=0.8, seed=3, frequency_penalty=0.5)}
    assert list(fallback.token_ids(prompt, **kwargs)) == list(runtime.token_ids(prompt, **kwargs))


def test_a_teacher_bundle_opens_on_its_own_default_variant(teacher_bundle: Path) -> None:
    assert BundleRuntime.load(teacher_bundle).variant == "int4"


VARIANTS = [*([("bundle", "ternary")] if library_path() else []), ("bundle", "nbits"), ("bundle", "exact"),
            ("teacher_bundle", "int4"), ("teacher_bundle", "fp32")]


@pytest.mark.parametrize(("which", "variant"), VARIANTS)
@pytest.mark.parametrize(("temperature", "top_p"), [(0.0, 1.0), (0.9, 0.8)])
def test_generation_with_and_without_kv_cache_is_identical(
    request: pytest.FixtureRequest, which: str, variant: str, temperature: float, top_p: float
) -> None:
    runtime = BundleRuntime.load(request.getfixturevalue(which), variant)
    prompt = runtime.tokenizer.encode_chat(PROMPT, add_generation_prompt=True)
    kwargs = {"max_tokens": 24, "sampling": Sampling(temperature=temperature, top_p=top_p, seed=7)}
    cached = list(runtime.token_ids(prompt, **kwargs))
    uncached = list(runtime.token_ids(prompt, use_cache=False, **kwargs))
    assert cached == uncached
    assert len(cached) >= 1


@pytest.mark.parametrize(("which", "variant"), VARIANTS)
def test_cached_decode_logits_match_a_full_forward(request: pytest.FixtureRequest, which: str, variant: str) -> None:
    runtime = BundleRuntime.load(request.getfixturevalue(which), variant)
    ids = runtime.tokenizer.encode_chat(PROMPT)
    full, _ = runtime.forward(ids)
    logits, cache = runtime.forward(ids[:5])
    steps = [logits]
    for token in ids[5:]:
        logits, cache = runtime.forward([token], cache)
        steps.append(logits)
    # nbits/int4 re-quantize activations per block, so a row's value may differ by rounding only
    tolerance = 1e-4 if variant in ("exact", "fp32") else 2e-2
    assert np.abs(np.concatenate(steps) - full).max() <= tolerance * np.abs(full).max()


def test_stream_stops_on_length_and_text_matches_tokens(runtime: BundleRuntime) -> None:
    prompt = runtime.tokenizer.encode_chat(PROMPT, add_generation_prompt=True)
    ids = list(runtime.token_ids(prompt, max_tokens=12))
    chunks = list(runtime.stream(prompt, max_tokens=12))
    assert all(isinstance(c, Chunk) for c in chunks)
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    streamed_ids = [t for c in chunks for t in c.token_ids]
    stopped = ids[-1] in runtime.tokenizer.stop_ids
    assert chunks[-1].finish_reason == ("stop" if stopped else "length")
    assert streamed_ids == (ids[:-1] if stopped else ids)
    assert "".join(c.text for c in chunks) == runtime.tokenizer.decode(streamed_ids, skip_special=True)


def test_the_repeat_guard_keeps_a_reply_from_saying_an_earlier_one_again(runtime: BundleRuntime) -> None:
    prompt = runtime.tokenizer.encode_chat(PROMPT, add_generation_prompt=True)
    first = list(runtime.token_ids(prompt, max_tokens=16))
    again = list(runtime.token_ids(prompt, max_tokens=16, steering=Steering(earlier=tuple(first)), sampling=Sampling(repeat_ngram=3)))
    said = {tuple(first[i : i + 3]) for i in range(len(first) - 2)}
    assert again != first
    assert not said & {tuple(again[i : i + 3]) for i in range(len(again) - 2)}, "no trigram of the earlier reply"
    assert list(runtime.token_ids(prompt, max_tokens=16, steering=Steering(earlier=tuple(first)), sampling=Sampling(repeat_ngram=0))) == first


def test_stop_string_ends_the_stream_and_is_not_emitted(runtime: BundleRuntime) -> None:
    prompt = runtime.tokenizer.encode_chat(PROMPT, add_generation_prompt=True)
    full = "".join(c.text for c in runtime.stream(prompt, max_tokens=30))
    assert len(full) >= 6, "the tiny model should produce some text"
    stop = full[3:5]
    chunks = list(runtime.stream(prompt, max_tokens=30, sampling=Sampling(stop=(stop,))))
    text = "".join(c.text for c in chunks)
    assert chunks[-1].finish_reason == "stop"
    assert text == full[: full.index(stop)]
    assert stop not in text


def test_stop_ids_are_the_tokenizers(runtime: BundleRuntime) -> None:
    stops = runtime.tokenizer.stop_ids
    assert runtime._stop_ids == set(stops)
    assert runtime.tokenizer.eos_id in stops and len(stops) == 2  # <|im_end|> and <|endoftext|>


def test_stop_tokens_end_the_stream(bundle: Path) -> None:
    runtime = BundleRuntime.load(bundle)
    prompt = runtime.tokenizer.encode_chat(PROMPT, add_generation_prompt=True)
    first = next(iter(runtime.token_ids(prompt, max_tokens=1)))
    runtime._stop_ids = frozenset({first})  # make the model's first greedy choice a stop token
    chunks = list(runtime.stream(prompt, max_tokens=10))
    assert chunks == [Chunk("", (), "stop")]


def test_max_tokens_is_bounded_by_the_context(runtime: BundleRuntime) -> None:
    prompt = [40] * 250
    ids = list(runtime.token_ids(prompt, max_tokens=50))
    assert 1 <= len(ids) <= runtime.context_length - len(prompt)
    with pytest.raises(ValueError, match="context"):
        list(runtime.stream([40] * 256, max_tokens=4))
    with pytest.raises(ValueError, match="max_tokens"):
        list(runtime.stream([40], max_tokens=0))
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=-1)


def test_partial_characters_and_stop_prefixes_are_held_back() -> None:
    assert _safe_length("caf\ufffd", []) == 3  # the first byte of "é" alone decodes to U+FFFD
    assert _safe_length("hello Us", ["User:"]) == 6
    assert _safe_length("hello", ["User:"]) == 5


def test_runtime_module_imports_no_torch() -> None:
    code = (
        "import sys; import bitzero.serving.runtime, bitzero.serving.bundle, bitzero.export.packing, "
        "bitzero.export.heldout, bitzero.export.promotion; "
        "bad = [m for m in ('torch', 'onnx', 'kedro', 'mlflow') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def test_missing_bundle_or_manifest_fails_clearly(copy: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        BundleRuntime.load(tmp_path / "nowhere")
    (copy / MANIFEST).unlink()
    with pytest.raises(BundleError, match="bitzero.json is missing"):
        BundleRuntime.load(copy)


def test_corrupt_model_file_fails_clearly(copy: Path) -> None:
    model = copy / "nbits" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"nbits/model.onnx is corrupt"):
        BundleRuntime.load(copy, "nbits")
    BundleRuntime.load(copy, "exact")  # the other variant is intact


def test_unknown_variant_and_garbled_manifest_fail_clearly(copy: Path) -> None:
    with pytest.raises(BundleError, match="no 'int4' variant"):
        BundleRuntime.load(copy, "int4")
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        BundleRuntime.load(copy)


def test_mismatched_tokenizer_fails_clearly(copy: Path) -> None:
    tokenizer = tiny_tokenizer()
    tokenizer.adapt(["zebra zebra zebra"] * 5, min_count=1, max_new_tokens=1, max_len=6)
    tokenizer.save(copy / "tokenizer.json")
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["tokenizer"]["sha256"] = sha256(copy / "tokenizer.json")  # a consistent but wrong bundle
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="mismatched"):
        BundleRuntime.load(copy)


def test_model_graph_not_matching_config_fails_clearly(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["config"]["n_layer"] = 3
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not match the bundle config"):
        BundleRuntime.load(copy)
