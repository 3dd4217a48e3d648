"""The transformer: quantization report, loss masking, generation with and without the KV cache,
rollout log-probs, gradient checkpointing, and checkpoints."""

import json

import pytest
import torch
import torch.nn.functional as F

from bitzero.model import (
    IGNORE_INDEX,
    BitLinear,
    BitZeroLM,
    CheckpointError,
    ModelConfig,
    load_checkpoint,
    save_checkpoint,
)


def tiny(**overrides) -> BitZeroLM:
    torch.manual_seed(0)
    values = dict(vocab_size=40, n_layer=2, n_head=2, n_kv_head=1, n_embd=32, ffn_hidden=64, block_size=48,
                  quantized=True)
    values.update(overrides)
    return BitZeroLM(ModelConfig(**values))


# n_embd 100, hidden 400: every configured ratio gives a whole number of channels.
REPORT_SIZES = dict(vocab_size=20, n_layer=6, n_head=2, n_kv_head=2, n_embd=100, ffn_hidden=400, block_size=16)


@pytest.mark.parametrize(
    ("setting", "per_block"),
    [
        ("adaptive", [0.15, 0.12, 0.08, 0.08, 0.08, 0.15]),
        (0.1, [0.1] * 6),
        (0.0, [0.0] * 6),
    ],
)
def test_report_fractions_equal_the_configured_ratios(setting, per_block):
    model = tiny(critical_ratio=setting, **REPORT_SIZES)
    report = model.quantization_report()
    weighted = 0.0
    for name, layer in report["layers"].items():
        ratio = per_block[int(name.split(".")[1])]
        assert layer["critical_fraction"] == pytest.approx(ratio)
        assert layer["ternary_fraction"] == pytest.approx(1 - ratio)
        assert layer["share_minus1"] + layer["share_zero"] + layer["share_plus1"] == pytest.approx(1)
        assert layer["gamma"] > 0
        weighted += ratio * layer["n_weights"]
    assert len(report["layers"]) == 6 * 7  # q k v o gate up down
    assert report["critical_fraction"] == pytest.approx(weighted / report["bitlinear_weights"])
    assert report["ternary_fraction"] == pytest.approx(1 - report["critical_fraction"])


def test_full_precision_teacher_has_no_bitlinear():
    model = tiny(quantized=False)
    assert not any(isinstance(m, BitLinear) for m in model.modules())
    report = model.quantization_report()
    assert report["layers"] == {} and report["ternary_fraction"] == 0.0


def test_tied_embeddings_share_one_matrix_and_untied_have_two():
    tied, untied = tiny(), tiny(tie_embeddings=False)
    assert tied.lm_head is None and tied.output_weight is tied.embed.weight
    assert untied.output_weight is untied.lm_head.weight
    assert untied.num_params() - tied.num_params() == 40 * 32
    logits, _ = untied(torch.randint(0, 40, (2, 5)))
    assert logits.shape == (2, 5, 40)


def test_sub_norm_adds_a_norm_before_o_proj_and_down_proj():
    plain, subln = tiny(), tiny(sub_norm=True)
    assert isinstance(plain.blocks[0].attn.sub_norm, torch.nn.Identity)
    assert subln.blocks[0].attn.sub_norm.weight.shape == (32,)
    assert subln.blocks[0].ffn.sub_norm.weight.shape == (64,)


def test_loss_ignores_masked_targets():
    model = tiny()
    idx = torch.randint(0, 40, (2, 6))
    targets = idx.clone()
    targets[:, :3] = IGNORE_INDEX
    logits, loss = model(idx, targets)
    expected = F.cross_entropy(logits[:, 3:].reshape(-1, 40), idx[:, 3:].reshape(-1))
    torch.testing.assert_close(loss, expected)


def test_kept_positions_give_the_full_forwards_logits_and_loss():
    model = tiny()
    idx = torch.randint(0, 40, (3, 7))
    targets = torch.randint(0, 40, (3, 7))
    keep = torch.rand(3, 7) < 0.4
    targets[~keep] = IGNORE_INDEX
    full, full_loss = model(idx, targets)
    kept, kept_loss = model(idx, targets, keep=keep)
    assert kept.shape == (int(keep.sum()), 40)
    # The rows in order, the rest never projected; only float32 summation order may differ.
    torch.testing.assert_close(kept, full[keep], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(kept_loss, full_loss, rtol=1e-4, atol=1e-6)


def test_greedy_generation_same_with_and_without_kv_cache():
    model = tiny()
    prompt = [1, 5, 7, 2]
    cached = model.generate(prompt, 30, use_cache=True)
    uncached = model.generate(prompt, 30, use_cache=False)
    assert len(cached) == 30
    assert cached == uncached


def test_batched_left_padded_rollout_matches_single_prompts():
    model = tiny()
    prompts = [[3, 4], [9, 8, 7, 6, 5]]
    batched = model.rollout(prompts, 10, temperature=0.0).sequences()
    assert batched == [model.generate(p, 10) for p in prompts]


def test_generation_stops_after_a_stop_id():
    model = tiny()
    free = model.generate([1, 2], 20)
    stop = free[4]
    stopped = model.generate([1, 2], 20, stop_ids=(stop,))
    assert stopped == free[: free.index(stop) + 1]


def test_rollout_logprobs_equal_a_fresh_forward():
    """PPO's old log-probs must be reproducible by scoring the sampled tokens again."""
    model = tiny()
    prompt = [1, 2, 3]
    out = model.rollout([prompt], 12, temperature=1.0, generator=torch.Generator().manual_seed(3))
    sequence = torch.tensor([prompt + out.tokens[0].tolist()])
    model.eval()
    logits, _ = model(sequence[:, :-1])
    logp = F.log_softmax(logits[0, len(prompt) - 1 :], dim=-1)
    expected = logp.gather(-1, out.tokens[0].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out.logprobs[0], expected, atol=1e-5, rtol=1e-5)


def test_sampling_is_reproducible_with_a_generator():
    model = tiny()
    a = model.generate([1], 15, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(7))
    b = model.generate([1], 15, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(7))
    assert a == b


def test_generation_longer_than_context_is_refused():
    model = tiny()
    with pytest.raises(ValueError, match="block_size"):
        model.generate([1] * 40, 20)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = tiny()
    idx = torch.randint(0, 40, (2, 10))
    model(idx, idx)[1].backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing = True
    model(idx, idx)[1].backward()
    for g, p in zip(plain, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g)


def test_checkpoint_round_trip(tmp_path):
    model = tiny()
    tokenizer = tmp_path / "tok.json"
    tokenizer.write_text('{"version": 2}')
    folder = save_checkpoint(model, tmp_path / "ckpt", tokenizer=tokenizer, metadata={"run": "x"})
    save_checkpoint(model, folder, tokenizer=tokenizer)  # overwriting in place works
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert json.loads((folder / "config.json").read_text())["model"]["n_embd"] == 32
    loaded = load_checkpoint(folder)
    model.eval()
    idx = torch.randint(0, 40, (1, 8))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])
    assert torch.equal(loaded.blocks[0].attn.q_proj.critical_mask, model.blocks[0].attn.q_proj.critical_mask)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_loading_a_missing_checkpoint_says_what_is_missing(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(tmp_path)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        ModelConfig(vocab_size=10, n_embd=32, n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="heads"):
        ModelConfig(vocab_size=10, n_embd=30, n_head=4)
