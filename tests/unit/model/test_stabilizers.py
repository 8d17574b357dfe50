"""Attention and stabilizer options against their formulas written out by hand (float64, tiny shapes):
z-loss, attention soft-cap and hard clamp, output soft-cap, QK-norm, residual-projection and
depth-scaled init, the embeddings' own init std, and the fused SDPA path being the one used when clamp
and soft-cap are off."""
import math

import pytest
import torch
import torch.nn.functional as F

from normlab.data import IGNORE
from normlab.model import build_model
from normlab.model.attention import SelfAttention
from normlab.training import lm_loss

from debugmodels import debug_model_config


def test_z_loss_by_hand():
    logits = torch.randn(2, 3, 5, dtype=torch.float64) * 4
    targets = torch.tensor([[1, 4, IGNORE], [0, 2, 3]])
    keep = targets.view(-1) != IGNORE
    flat = logits.view(-1, 5)[keep]
    lse = torch.log(torch.exp(flat).sum(-1))
    ce = (lse - flat[torch.arange(len(flat)), targets.view(-1)[keep]]).mean()
    expected = ce + 1e-2 * (lse ** 2).mean()
    torch.testing.assert_close(lm_loss(logits, targets, 1e-2).double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lm_loss(logits, targets).double(), ce, rtol=1e-6, atol=1e-6)


def _attention_by_hand(att: SelfAttention, x, transform):
    """softmax(transform(q k^T / sqrt(D)) + causal mask) v, then the output projection."""
    B, T, C = x.shape
    H, D = att.n_head, att.head_dim
    q, k, v = (x @ att.qkv.weight.T).split(C, dim=-1)
    q, k, v = (t.reshape(B, T, H, D).transpose(1, 2) for t in (q, k, v))
    scores = transform(q @ k.transpose(-2, -1) / math.sqrt(D))
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = torch.softmax(scores, -1) @ v
    return y.transpose(1, 2).reshape(B, T, C) @ att.proj.weight.T, scores


@pytest.mark.parametrize("option,transform", [
    ("model.attn.logit_softcap=0.5", lambda s: 0.5 * torch.tanh(s / 0.5)),
    ("model.attn.logit_clamp=0.5", lambda s: s.clamp(-0.5, 0.5)),
])
def test_capped_attention_equals_explicit_softmax(option, transform):
    att = SelfAttention(debug_model_config(option)).double()                # nn.Linear's own init: no init_weights here
    x = 4 * torch.randn(2, 6, 16, dtype=torch.float64)
    expected, _ = _attention_by_hand(att, x, transform)
    _, raw = _attention_by_hand(att, x, lambda s: s)
    assert raw[torch.isfinite(raw)].abs().max() > 1.0        # the cap really bites at these scores
    torch.testing.assert_close(att(x), expected)


def test_uncapped_attention_equals_explicit_softmax():
    att = SelfAttention(debug_model_config()).double()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    torch.testing.assert_close(att(x), _attention_by_hand(att, x, lambda s: s)[0])


@pytest.mark.parametrize("option,fused", [("", True), ("model.attn.logit_clamp=30", False),
                                          ("model.attn.logit_softcap=50", False), ("model.out_logit_softcap=30", True)])
def test_fused_sdpa_is_used_only_when_clamp_and_softcap_are_off(monkeypatch, option, fused):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("is_causal"))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model = build_model(debug_model_config(*([option] if option else [])))
    model(torch.randint(0, 11, (2, 8)))
    assert calls == ([True] * 2 if fused else [])    # one causal call per layer, or none


def test_output_logit_softcap_by_hand():
    torch.manual_seed(2)
    plain = build_model(debug_model_config("model.init_std=0.5"))
    torch.manual_seed(2)
    capped = build_model(debug_model_config("model.init_std=0.5", "model.out_logit_softcap=2.0"))
    idx = torch.randint(0, 11, (2, 8))
    raw = plain(idx)
    assert raw.abs().max() > 2.0
    torch.testing.assert_close(capped(idx), 2.0 * torch.tanh(raw / 2.0))


def test_qk_norm_gives_unit_rms_q_and_k_per_head():
    model = build_model(debug_model_config("model.attn.qk_norm=true", "model.init_std=0.5", "model.pos=rope"))
    seen = {}
    att = model.blocks[1].attn
    att.tap_q.register_forward_hook(lambda m, i, o: seen.update(q=o))
    att.tap_k.register_forward_hook(lambda m, i, o: seen.update(k=o))
    model(torch.randint(0, 11, (2, 8)))
    for name in ("q", "k"):      # RoPE rotates pairs of channels, so the per-head rms stays 1
        rms = seen[name].pow(2).mean(-1).sqrt()
        torch.testing.assert_close(rms, torch.ones_like(rms), rtol=0, atol=1e-3)


def test_depth_scaled_and_residual_init_scale():
    cfg = debug_model_config("model.d_model=64", "model.n_layer=8", "model.init_std=0.1", "model.resid_init_scale=0.5",
               "model.depth_scaled_init=true")
    model = build_model(cfg)
    expected = 0.1 * 0.5 / math.sqrt(2 * 8)
    for block in model.blocks[:2]:
        assert block.attn.proj.weight.std().item() == pytest.approx(expected, rel=0.08)
        assert block.mlp.proj.weight.std().item() == pytest.approx(expected, rel=0.08)
        assert block.attn.qkv.weight.std().item() == pytest.approx(0.1, rel=0.08)


def test_embedding_init_std_is_its_own_where_set():
    base = ["model.d_model=64", "model.init_std=0.05", "model.pos=learned", "model.tie_embeddings=false"]
    for extra, embed in (([], 0.05), (["model.embed_init_std=1.0"], 1.0)):
        model = build_model(debug_model_config(*base, *extra))
        assert model.wte.weight.std().item() == pytest.approx(embed, rel=0.08)
        assert model.wpe.weight.std().item() == pytest.approx(embed, rel=0.08)
        assert model.lm_head.weight.std().item() == pytest.approx(0.05, rel=0.08)   # the head is a linear layer
        assert model.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.05, rel=0.08)
