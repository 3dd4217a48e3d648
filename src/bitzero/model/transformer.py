"""The BitZero language model: the Llama architecture in one file (nanoGPT-style).

RMSNorm pre-norms, rotary position embeddings with the checkpoint's theta, grouped-query
attention through ``F.scaled_dot_product_attention``, a SwiGLU feed-forward and (optionally) tied
embeddings: the layout of SmolLM2, Llama 2/3 and TinyLlama, loaded from their Hugging Face weights
(``bitzero.model.pretrained``) and held to transformers' logits in the tests. Three options cover
the other families people start from: q/k/v biases (Qwen2/2.5), an RMSNorm over each head of q and
k before rotary with a head size of its own (Qwen3), and Llama 3's RoPE frequency scaling.
``quantized`` swaps every q/k/v/o/gate/up/down projection for a ternary BitLinear: the teacher and
its student are one model family. ``sub_norm`` adds BitNet's SubLN (a norm before o_proj and before
down_proj; BitNet Distillation adds it when converting a full-precision model), initialised to the
identity scale.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bitzero.config import check_keys
from bitzero.model.bitlinear import ADAPTIVE, BitLinear, block_critical_ratio, layer_report
from bitzero.model.generation import KVCache, Rollout, sample_next

IGNORE_INDEX = -100
LLAMA3_ROPE = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


@dataclass
class ModelConfig:
    """Everything needed to rebuild the model; stored as JSON next to the weights."""

    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2
    n_embd: int = 64
    ffn_hidden: int = 172
    block_size: int = 2048  # the context length
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    dropout: float = 0.0
    quantized: bool = False
    sub_norm: bool = False
    critical_ratio: str | float = ADAPTIVE
    critical_mask_frozen: bool = False  # the critical channels are fixed (see BitLinear.freeze_mask)
    per_row_scale: bool = False  # ternary gamma per output row (fitted scales) instead of per tensor
    head_dim: int = 0  # 0: n_embd // n_head; Qwen3 sets its own (1024 wide, 16 heads of 128)
    attn_bias: bool = False  # full-precision biases on q/k/v (Qwen2/2.5)
    qk_norm: bool = False  # RMSNorm over each head of q and k before rotary (Qwen3)
    # Llama 3's RoPE scaling: {"rope_type": "llama3", **{key: value for key in LLAMA3_ROPE}}; None: plain RoPE.
    rope_scaling: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.head_dim:
            if self.n_embd % self.n_head:
                raise ValueError("n_embd must split into n_head heads (or set head_dim)")
            self.head_dim = self.n_embd // self.n_head
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even (rotary pairs)")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}")
        block_critical_ratio(self.critical_ratio, 0, self.n_layer)  # validates the setting
        if self.rope_scaling is not None:
            keys = {"rope_type", *LLAMA3_ROPE}
            if self.rope_scaling.get("rope_type") != "llama3" or set(self.rope_scaling) != keys:
                raise ValueError(f"rope_scaling must be Llama 3's, with exactly the keys {sorted(keys)}")

    @property
    def attn_width(self) -> int:
        """The width of the concatenated heads: q_proj's output, o_proj's input."""
        return self.n_head * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        check_keys(cls, values, "model")
        return cls(**values)


def make_linear(config: ModelConfig, n_in: int, n_out: int, critical_ratio: float, bias: bool = False) -> nn.Module:
    if config.quantized:
        return BitLinear(
            n_in, n_out, critical_ratio=critical_ratio, bias=bias, mask_frozen=config.critical_mask_frozen,
            per_row_scale=config.per_row_scale,
        )
    return nn.Linear(n_in, n_out, bias=bias)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)


def sub_norm(config: ModelConfig, dim: int) -> nn.Module:
    return RMSNorm(dim, config.norm_eps) if config.sub_norm else nn.Identity()


def head_norm(config: ModelConfig) -> nn.Module:
    return RMSNorm(config.head_dim, config.norm_eps) if config.qk_norm else nn.Identity()


def llama3_frequencies(inv_freq: torch.Tensor, scaling: dict[str, Any]) -> torch.Tensor:
    """Llama 3's long-context RoPE (as transformers): frequencies whose wavelength exceeds the
    original context / ``low_freq_factor`` slowed by ``factor``, those shorter than the original
    context / ``high_freq_factor`` kept, a smooth blend between."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > context / low, inv_freq / factor, inv_freq)
    smooth = (context / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= context / high) & (wavelen <= context / low)
    return torch.where(medium, blended, scaled)


def rotary_tables(
    head_dim: int, length: int, theta: float, scaling: dict[str, Any] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
    if scaling is not None:
        inv_freq = llama3_frequencies(inv_freq, scaling)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D); cos/sin: (B, 1, T, D). Llama's rotate-half convention."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int, ratio: float) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        kv_width, bias = config.n_kv_head * config.head_dim, config.attn_bias
        self.q_proj = make_linear(config, config.n_embd, config.attn_width, ratio, bias)
        self.k_proj = make_linear(config, config.n_embd, kv_width, ratio, bias)
        self.v_proj = make_linear(config, config.n_embd, kv_width, ratio, bias)
        # Qwen3's per-head norms: full precision, like every norm of the student.
        self.q_norm = head_norm(config)
        self.k_norm = head_norm(config)
        self.sub_norm = sub_norm(config, config.attn_width)
        self.o_proj = make_linear(config, config.attn_width, config.n_embd, ratio)
        self.dropout = config.dropout
        # Set to a dict to receive this layer's queries, keys and values (attention-relation
        # distillation reads them); None otherwise.
        self.capture: dict[str, torch.Tensor] | None = None

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        kv_cache: KVCache | None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, t, self.n_head, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, t, self.n_kv_head, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        if self.capture is not None:
            self.capture.update(q=q, k=k, v=v)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)
        dropout = self.dropout if self.training else 0.0
        causal = mask is None and kv_cache is None
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal,
            enable_gqa=self.n_kv_head != self.n_head,
        )
        return self.o_proj(self.sub_norm(y.transpose(1, 2).reshape(b, t, self.n_head * self.head_dim)))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig, ratio: float) -> None:
        super().__init__()
        self.gate_proj = make_linear(config, config.n_embd, config.ffn_hidden, ratio)
        self.up_proj = make_linear(config, config.n_embd, config.ffn_hidden, ratio)
        self.sub_norm = sub_norm(config, config.ffn_hidden)
        self.down_proj = make_linear(config, config.ffn_hidden, config.n_embd, ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.sub_norm(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        ratio = block_critical_ratio(config.critical_ratio, layer_idx, config.n_layer) if config.quantized else 0.0
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = Attention(config, layer_idx, ratio)
        self.ffn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.ffn = FeedForward(config, ratio)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), rotary, mask, kv_cache))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class BitZeroLM(nn.Module):
    """Decoder-only language model; ``config.quantized`` switches ternary BitLinear on or off."""

    config: ModelConfig
    rope_cos: torch.Tensor  # buffers (register_buffer in __init__)
    rope_sin: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.gradient_checkpointing = False
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.n_embd, config.vocab_size, bias=False)
        cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta, config.rope_scaling)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """Small random weights: the tiny configs of the tests; real models load a checkpoint."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, BitLinear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, BitLinear):
                module.refresh_critical_mask()

    @property
    def output_weight(self) -> torch.Tensor:
        """The (vocab, n_embd) matrix of the output layer: the embeddings when they are tied."""
        return self.embed.weight if self.lm_head is None else self.lm_head.weight

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def bit_linears(self) -> list[tuple[str, BitLinear]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, BitLinear)]

    def freeze_critical_masks(self) -> None:
        """Fix every layer's critical channels from here on, in this model and the checkpoints it
        makes (the config records it), so later training (self-play) keeps them too."""
        for _, layer in self.bit_linears():
            layer.freeze_mask()
        self.config.critical_mask_frozen = True

    def new_kv_cache(self, max_len: int | None = None) -> KVCache:
        return KVCache(self.config.n_layer, max_len or self.config.block_size)

    def _rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if int(positions.max()) >= self.config.block_size:
            raise ValueError(f"sequence longer than block_size={self.config.block_size}")
        return self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) and, with targets, the mean CE over non-ignored targets.

        ``kv_cache`` holds earlier keys/values (it is extended in place); ``attn_mask`` (B, past+T)
        marks real tokens, so left-padded prompts of different lengths batch correctly. ``keep``
        (B, T, bool) asks for the logits of those positions only, as (N, vocab) rows in order (and
        the CE over the kept targets): a loss on a share of the tokens then skips the vocabulary
        projection everywhere else, a fifth of SmolLM2's FLOPs and most of a 150k-vocabulary
        model's activation memory.
        """
        b, t = idx.shape
        past = kv_cache.length if kv_cache is not None else 0
        if attn_mask is None:
            positions = torch.arange(past, past + t, device=idx.device).expand(b, t)
            mask = None if t == 1 or kv_cache is None else _slot_mask(past, t, None, idx.device)
        else:
            positions = (attn_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
            mask = _slot_mask(past, t, attn_mask, idx.device)
        rotary = self._rotary(positions)
        x = self.drop(self.embed(idx))
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and kv_cache is None:
                x = checkpoint(block, x, rotary, mask, use_reentrant=False)
            else:
                x = block(x, rotary, mask, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(t)
        hidden = self.norm(x)
        if keep is not None:
            hidden = hidden[keep]
            targets = None if targets is None else targets[keep]
        logits = F.linear(hidden, self.output_weight)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    @torch.no_grad()
    def rollout(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop_ids: tuple[int, ...] | list[int] = (),
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        pad_id: int = 0,
    ) -> Rollout:
        """Sample continuations for a batch of prompts, with each sampled token's log-probability.

        Prompts are left-padded. Log-probs are under softmax(logits / temperature) (temperature 1
        when greedy), before top-p truncation: what PPO needs as the old policy's log-probs.
        """
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        device = self.embed.weight.device
        width = max(len(p) for p in prompts)
        total = width + max_new_tokens
        if total > self.config.block_size:
            raise ValueError(f"prompt + new tokens = {total} exceeds block_size={self.config.block_size}")
        b = len(prompts)
        seq = torch.full((b, width), pad_id, dtype=torch.long, device=device)
        valid = torch.zeros(b, total, dtype=torch.bool, device=device)
        for row, prompt in enumerate(prompts):
            seq[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            valid[row, width - len(prompt) : width] = True
        stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
        tokens = torch.full((b, max_new_tokens), pad_id, dtype=torch.long, device=device)
        logprobs = torch.zeros(b, max_new_tokens, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        produced = torch.zeros(b, max_new_tokens, dtype=torch.bool, device=device)
        padded = bool((~valid[:, :width]).any())
        cache = self.new_kv_cache(total) if use_cache else None
        was_training = self.training
        self.eval()
        try:
            steps = 0
            for step in range(max_new_tokens):
                length = width + step
                inputs = seq[:, -1:] if cache is not None and step > 0 else seq
                mask = valid[:, :length] if padded else None
                logits, _ = self(inputs, kv_cache=cache, attn_mask=mask)
                nxt, lp = sample_next(logits[:, -1, :].float(), temperature, top_p, generator)
                tokens[:, step] = torch.where(done, pad_id, nxt)
                logprobs[:, step] = torch.where(done, 0.0, lp)
                produced[:, step] = ~done
                valid[:, length] = True
                done |= torch.isin(nxt, stops)
                seq = torch.cat([seq, tokens[:, step : step + 1]], dim=1)
                steps = step + 1
                if bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return Rollout(tokens[:, :steps], logprobs[:, :steps], produced[:, :steps])

    def generate(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop_ids: tuple[int, ...] | list[int] = (),
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """New token ids for one prompt (greedy by default), stopping after a stop id."""
        result = self.rollout(
            [list(prompt_ids)], max_new_tokens, temperature, top_p, stop_ids, use_cache, generator
        )
        return result.sequences()[0]

    def quantization_report(self) -> dict[str, Any]:
        """Per BitLinear layer and in total: how much is ternary, how much full precision."""
        layers = {name: layer_report(module) for name, module in self.bit_linears()}
        n_bit = sum(r["n_weights"] for r in layers.values())
        n_ternary = sum(r["n_weights"] * r["ternary_fraction"] for r in layers.values())
        return {
            "layers": layers,
            "bitlinear_weights": n_bit,
            "ternary_fraction": n_ternary / n_bit if n_bit else 0.0,
            "critical_fraction": (n_bit - n_ternary) / n_bit if n_bit else 0.0,
            "ternary_share_of_all_params": n_ternary / self.num_params(),
            "critical_mask_frozen": self.config.critical_mask_frozen,
        }


def _slot_mask(past: int, t: int, valid: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Boolean (B|1, 1, T, past+T) attention mask: causal, real keys only, self always allowed."""
    query = torch.arange(past, past + t, device=device).unsqueeze(1)
    key = torch.arange(past + t, device=device).unsqueeze(0)
    allowed = (key <= query).unsqueeze(0)
    if valid is not None:
        # A padding query may see no real key; letting it see itself keeps the softmax finite.
        allowed = (allowed & valid[:, None, :]) | (key == query).unsqueeze(0)
    return allowed.unsqueeze(1)
