"""The real SmolLM2-135M-Instruct as a 4-bit ONNX bundle: parity and a sensible reply (slow-ish:
~3 min the first time, seconds once tests/real_teacher.py's cache holds the conversion)."""

import json

import pytest

from bitzero.model.pretrained import PretrainedError
from bitzero.serving.bundle import MANIFEST
from bitzero.serving.runtime import BundleRuntime
from tests.real_teacher import INT4_TOLERANCE, real_teacher_bundle


@pytest.mark.timeout(900)
def test_real_teacher_int4_bundle_matches_pytorch_and_replies_with_sympathy() -> None:
    try:
        bundle = real_teacher_bundle()
    except PretrainedError as exc:
        pytest.skip(str(exc))
    manifest = json.loads((bundle / MANIFEST).read_text())
    parity = manifest["parity"]["int4"]
    # The export's criterion: every sub-layer fed PyTorch's own input (end to end, the int8
    # activations MatMulNBits computes with legitimately move the logits by a few percent).
    assert parity["layerwise"]["max_rel_error"] <= INT4_TOLERANCE and parity["top1_agreement"] >= 0.95
    assert manifest["sizes"]["int4"]["bytes"] < 200e6  # 538 MB in fp32
    assert manifest["held_out_nll"]["overall"] < 5.0  # 3.5 measured on the handmade replies; untrained ternary: 12-20

    runtime = BundleRuntime.load(bundle, "int4")
    assert runtime.context_length == 2048
    chat = [{"role": "system", "content": "You are a kind, supportive companion."},
            {"role": "user", "content": "My dog died yesterday and I feel awful."}]
    chunks = list(runtime.stream(runtime.tokenizer.encode_chat(chat, add_generation_prompt=True), max_tokens=40))
    reply = "".join(c.text for c in chunks)
    assert "sorry" in reply.lower(), reply
    assert reply.isascii() and len(reply.split()) >= 5, reply
