"""onnxruntime-genai for a bundle's graph: its ``genai_config.json``, and the KV cache kept in place.

The graphs of ``bitzero.export.graph`` have the I/O onnxruntime-genai's decoder reads (input_ids,
attention_mask, past/present keys and values per layer, GroupQueryAttention writing the cache in
place), so a variant folder with this config runs in og.Generator: its C++ loop keeps one KV
buffer for the whole reply (``past_present_share_buffer``) where the numpy path copies every
layer's cache at every step. Torch-free and onnx-free; onnxruntime-genai is optional (``AVAILABLE``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bitzero import kernels
from bitzero.serving.bundle import head_size

try:
    import onnxruntime_genai as og
except ImportError:  # the numpy path of BundleRuntime serves without it
    og = None
if og is not None and hasattr(og, "disable_telemetry_events"):
    og.disable_telemetry_events()  # the project sends no telemetry

AVAILABLE = og is not None
CONFIG_FILE = "genai_config.json"


def genai_config(config: Mapping[str, Any], stop_ids: Sequence[int], filename: str) -> dict[str, Any]:
    """The decoder config onnxruntime-genai loads for a graph of ``config``'s shape (greedy by
    default: BundleRuntime samples itself)."""
    eos = [int(i) for i in stop_ids] or [0]
    return {
        "model": {
            "type": "llama",
            "context_length": int(config["block_size"]),
            "vocab_size": int(config["vocab_size"]),
            "bos_token_id": eos[0],
            "eos_token_id": eos if len(eos) > 1 else eos[0],
            "pad_token_id": eos[0],
            "decoder": {
                "filename": filename,
                "session_options": {"log_id": "bitzero", "provider_options": []},
                "head_size": head_size(config),
                "hidden_size": int(config["n_embd"]),
                "num_attention_heads": int(config["n_head"]),
                "num_key_value_heads": int(config["n_kv_head"]),
                "num_hidden_layers": int(config["n_layer"]),
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "past_key_names": "past_key.%d", "past_value_names": "past_value.%d"},
                "outputs": {"logits": "logits",
                            "present_key_names": "present_key.%d", "present_value_names": "present_value.%d"},
            },
        },
        "search": {"do_sample": False, "num_beams": 1, "max_length": int(config["block_size"]),
                   "past_present_share_buffer": True, "temperature": 1.0, "top_k": 1, "top_p": 1.0},
    }


def write_config(folder: Path, config: Mapping[str, Any], stop_ids: Sequence[int], filename: str) -> Path:
    path = folder / CONFIG_FILE
    path.write_text(json.dumps(genai_config(config, stop_ids, filename), indent=2), encoding="utf-8")
    return path


class GenaiModel:
    """One variant folder loaded by onnxruntime-genai, on the CPU with ``threads`` threads."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        if og is None:
            raise RuntimeError("onnxruntime-genai is not installed")
        config = og.Config(str(folder))
        options: dict[str, Any] = {"intra_op_num_threads": threads, "inter_op_num_threads": 1} if threads else {}
        library = kernels.genai_library()
        if library is not None:  # our TernaryMatMul (the ternary graph needs it; harmless for the others)
            options["custom_ops_library"] = str(library)
        if options:
            config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self._model = og.Model(config)

    def session(self, prompt: Sequence[int], max_length: int) -> GenaiSession:
        return GenaiSession(self._model, prompt, max_length)


class GenaiSession:
    """One sequence's KV cache in onnxruntime-genai: feed tokens, read the last position's logits."""

    def __init__(self, model: Any, prompt: Sequence[int], max_length: int) -> None:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=max_length, do_sample=False)
        self._generator = og.Generator(model, params)
        self.logits = self._append(prompt)

    def _append(self, ids: Sequence[int]) -> np.ndarray:
        self._generator.append_tokens(np.asarray(ids, dtype=np.int32))
        return np.asarray(self._generator.get_logits())[0, -1]

    def advance(self, token: int) -> np.ndarray:
        """The logits after ``token``; the cache grows in place."""
        self.logits = self._append([token])
        return self.logits
