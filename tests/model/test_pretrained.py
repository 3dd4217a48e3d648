"""Pretrained checkpoints: this model's logits equal transformers' on the same weights, and the
ternary student converted from them keeps the teacher's shape, weights and vocabulary."""

import pytest
import torch

from bitzero.model import BitLinear
from bitzero.model.pretrained import (
    PretrainedError,
    config_from_hf,
    grow_vocabulary,
    import_pretrained,
    resolve_source,
    ternary_student,
    tokenizer_from_hf,
)
from bitzero.text import Tokenizer
from tests.tiny import CHAT_TEMPLATE, HF_FAMILIES, tiny_hf_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_hf_checkpoint(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="module")
def imported(checkpoint):
    return import_pretrained(str(checkpoint))


def test_logits_match_transformers(checkpoint, imported):
    from transformers import AutoModelForCausalLM

    model, _, facts = imported
    reference = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    idx = torch.randint(0, model.config.vocab_size, (2, 37), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(idx).logits
    actual, _ = model(idx)
    torch.testing.assert_close(actual, expected, atol=2e-5, rtol=1e-4)
    assert facts["architecture"] == "LlamaForCausalLM"
    assert model.config.n_kv_head == 2 and model.config.tie_embeddings


def test_kv_cached_decoding_matches_transformers_greedy(checkpoint, imported):
    from transformers import AutoModelForCausalLM

    model, _, _ = imported
    reference = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    prompt = [5, 17, 42, 8]
    expected = reference.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                  eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    assert model.generate(prompt, 12) == expected


@pytest.fixture(scope="module", params=[f for f in HF_FAMILIES if f != "llama"])
def family(request, tmp_path_factory):
    """(name, checkpoint folder, imported model) of each other family a teacher comes from."""
    folder = tiny_hf_checkpoint(tmp_path_factory.mktemp("hf") / request.param, family=request.param)
    return request.param, folder, import_pretrained(str(folder))[0]


def test_every_family_holds_to_transformers_logits_and_greedy_decoding(family):
    from transformers import AutoModelForCausalLM

    _, folder, model = family
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    idx = torch.randint(0, model.config.vocab_size, (2, 150), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # 150 positions: past Llama 3's original context of 32, into its scaled bands
        torch.testing.assert_close(model(idx)[0], reference(idx).logits, atol=2e-5, rtol=1e-4)
    prompt = [5, 17, 42, 8]
    expected = reference.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False,
                                  eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    assert model.generate(prompt, 40) == expected


def test_each_family_imports_with_its_own_options(family):
    name, _, model = family
    config = model.config
    assert config.attn_bias == (name == "qwen2") and config.qk_norm == (name == "qwen3")
    assert config.head_dim == (32 if name == "qwen3" else 16)
    assert (config.rope_scaling is not None) == (name == "llama3")
    assert config.tie_embeddings == (name != "llama3")


def test_student_keeps_biases_and_head_norms_in_full_precision(family):
    name, _, teacher = family
    student = ternary_student(teacher, critical_ratio=0.0)
    attn, taught = student.blocks[1].attn, teacher.blocks[1].attn
    assert isinstance(attn.q_proj, BitLinear)
    for part in ("q_proj", "k_proj", "v_proj"):
        bias = getattr(attn, part).bias
        assert (bias is not None) == (name == "qwen2")
        if bias is not None:
            torch.testing.assert_close(bias, getattr(taught, part).bias)
    if name == "qwen3":
        torch.testing.assert_close(attn.k_norm.weight, taught.k_norm.weight)
    # With no quantization mixed in, the student computes exactly what the teacher does: every
    # option (biases, head norms, head size, RoPE scaling) came across.
    for _, layer in student.bit_linears():
        layer.quant_mix = 0.0
    idx = torch.randint(0, teacher.config.vocab_size, (1, 40))
    with torch.no_grad():
        torch.testing.assert_close(student.train()(idx)[0], teacher(idx)[0])


def test_configs_this_model_cannot_run_are_refused_by_name():
    from transformers import LlamaConfig

    base = dict(vocab_size=50, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48)
    with pytest.raises(PretrainedError, match="o_proj or MLP biases"):
        config_from_hf(LlamaConfig(attention_bias=True, **base), "LlamaForCausalLM")
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    with pytest.raises(PretrainedError, match="'yarn' is not supported"):
        config_from_hf(LlamaConfig(rope_scaling=yarn, **base), "LlamaForCausalLM")
    with pytest.raises(PretrainedError, match="GPT2LMHeadModel is not supported"):
        config_from_hf(LlamaConfig(**base), "GPT2LMHeadModel")


def test_tokenizer_and_template_come_from_the_checkpoint(checkpoint, imported):
    from transformers import AutoTokenizer

    _, tokenizer, _ = imported
    reference = AutoTokenizer.from_pretrained(checkpoint)
    chat = [{"role": "user", "content": "hello there, how are you?"}]
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.encode_chat(chat, add_generation_prompt=True) == reference.apply_chat_template(
        chat, add_generation_prompt=True, tokenize=True, return_dict=False)


def test_the_template_gets_the_checkpoints_bos_token_and_answers_without_thinking(checkpoint, tmp_path):
    """Llama 3's templates open with bos_token; Qwen3's think first unless told enable_thinking=False."""
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(checkpoint)
    reference.chat_template = "{{ bos_token }}" + CHAT_TEMPLATE + (
        "{% if add_generation_prompt and enable_thinking is defined and not enable_thinking %}"
        "{{ '<think>\n\n</think>\n\n' }}{% endif %}")
    reference.save_pretrained(tmp_path)
    tokenizer = tokenizer_from_hf(AutoTokenizer.from_pretrained(tmp_path))
    chat = [{"role": "user", "content": "hello there, how are you?"}]
    ids = tokenizer.encode_chat(chat, add_generation_prompt=True)
    assert ids[0] == reference.bos_token_id
    assert ids == reference.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False,
                                                enable_thinking=False)
    assert Tokenizer.from_dict(tokenizer.to_dict()).encode_chat(chat, add_generation_prompt=True) == ids


def test_a_base_checkpoints_turns_end_where_its_template_ends_them(checkpoint, tmp_path):
    """Qwen base checkpoints name <|endoftext|> as eos; their template closes turns with <|im_end|>."""
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(checkpoint)
    reference.eos_token = "<|endoftext|>"
    reference.save_pretrained(tmp_path)
    tokenizer = tokenizer_from_hf(AutoTokenizer.from_pretrained(tmp_path))
    assert tokenizer.eos_token == "<|im_end|>"
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    ids, mask = tokenizer.encode_chat_with_mask(chat)
    assert tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "hello there<|im_end|>"


def test_student_keeps_the_teachers_weights_as_ternary_layers(imported):
    teacher = imported[0]
    student = ternary_student(teacher, critical_ratio=0.0)
    layers = [m for m in student.modules() if isinstance(m, BitLinear)]
    assert len(layers) == 2 * 7 and student.config.quantized
    torch.testing.assert_close(student.blocks[1].ffn.down_proj.weight, teacher.blocks[1].ffn.down_proj.weight)
    idx = torch.randint(0, teacher.config.vocab_size, (1, 20))
    student.eval()
    with torch.no_grad():
        gap = (student(idx)[0] - teacher(idx)[0]).abs().mean()
    assert 0 < gap < teacher(idx)[0].abs().mean()  # rounded, not random


def test_fewer_layers_keep_the_first_and_the_last(imported):
    teacher = imported[0]
    student = ternary_student(teacher, critical_ratio=0.1, n_layer=1)
    assert student.config.n_layer == 1
    torch.testing.assert_close(student.blocks[0].attn.q_proj.weight, teacher.blocks[0].attn.q_proj.weight)
    with pytest.raises(PretrainedError, match="between 1 and 2"):
        ternary_student(teacher, critical_ratio=0.1, n_layer=3)


def test_appended_tokens_start_as_the_mean_of_their_pieces(imported):
    model, tokenizer, _ = imported
    model = ternary_student(model, critical_ratio=0.0)  # a copy: the module fixture stays intact
    old = model.config.vocab_size
    added = tokenizer.adapt(["zebra-crossing " * 50], min_count=10, max_new_tokens=1, max_len=12)
    grow_vocabulary(model, tokenizer)
    assert model.config.vocab_size == old + 1 == model.embed.weight.shape[0]
    pieces = tokenizer.pieces_of(added[0])
    assert len(pieces) > 1
    torch.testing.assert_close(model.embed.weight[old], model.embed.weight[pieces].mean(0))


def test_unusable_sources_say_what_to_do(tmp_path):
    with pytest.raises(PretrainedError, match="not a Hugging Face model folder"):
        resolve_source(str(tmp_path))
    with pytest.raises(PretrainedError, match="not installed"):
        resolve_source("package:no_such_package_here/model.gguf")
