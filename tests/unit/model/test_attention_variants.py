"""The frontier attention options and stabilizers against their formulas written out by hand (float64, tiny
shapes): the output gate, softpick (stable form == naive formula), sigmoid attention with b = -log n, the
gpt-oss sink (fused SDPA path == concat-softmax-drop), qkv_norm, what `probabilities` returns being what the
forward computes, causality, the fused path being kept where it can express the variant, residual clipping,
QK-Clip, weight-decay modes, and the config refusals."""
import math

import pytest
import torch
import torch.nn.functional as F

from normlab.config import ConfigError, load_config
from normlab.model import build_model
from normlab.model.attention import SelfAttention, softpick
from normlab.training.optim import build_optimizer, set_lr
from normlab.training.qk_clip import QKClip

from causality import assert_causal  # tests/unit/causality.py
from debugmodels import debug_model_config

CAUSAL = torch.ones(6, 6, dtype=torch.bool).tril()


def _qkv(att, x):
    B, T, C = x.shape
    q, k, v = (t.reshape(B, T, att.n_head, att.head_dim).transpose(1, 2) for t in (x @ att.qkv.weight.T).split(C, -1))
    return q, k, v, q @ k.transpose(-2, -1) / math.sqrt(att.head_dim)


def _out(att, x, probs, v):
    B, T, C = x.shape
    return (probs @ v).transpose(1, 2).reshape(B, T, C) @ att.proj.weight.T


def _att(*overrides, scale=1.0):
    torch.manual_seed(0)
    att = SelfAttention(debug_model_config(*overrides)).double()
    with torch.no_grad():
        att.qkv.weight.mul_(scale)
    return att


X = 2 * torch.randn(2, 6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind,width", [("headwise", 1), ("elementwise", 8)])
def test_output_gate_by_hand(kind, width):
    att = _att(f"model.attn.gate={kind}")
    assert att.gate.weight.shape == (2 * width, 16) and att.gate.bias is None
    q, k, v, s = _qkv(att, X)
    y = torch.softmax(s.masked_fill(~CAUSAL, float("-inf")), -1) @ v                       # B,H,T,D
    g = torch.sigmoid(X @ att.gate.weight.T).view(2, 6, 2, width).transpose(1, 2)           # from the attention's input
    expected = (y * g).transpose(1, 2).reshape(2, 6, 16) @ att.proj.weight.T
    torch.testing.assert_close(att(X), expected)


def _naive_softpick(s, visible):
    e = torch.exp(s) - 1
    num = torch.where(visible, F.relu(e), torch.zeros_like(e))
    return num / (torch.where(visible, e.abs(), torch.zeros_like(e)).sum(-1, keepdim=True) + 1e-8)


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_softpick_stable_form_equals_the_naive_formula(scale):
    s = scale * torch.randn(2, 2, 6, 6, dtype=torch.float64)
    hidden = ~CAUSAL
    got = softpick(s, hidden)
    torch.testing.assert_close(got, _naive_softpick(s, CAUSAL), rtol=1e-10, atol=1e-12)
    assert (got[..., hidden] == 0).all() and (got.sum(-1) <= 1 + 1e-12).all()
    assert (got.sum(-1) < 0.999).any()                         # rows need not sum to 1
    big = softpick(s + 1000.0, hidden)                          # the naive e^s overflows here; the shifted form does not
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big, _naive_softpick(s, CAUSAL) * 0 + softpick(s + 1000.0, hidden))
    tiny = softpick(s - 1000.0, hidden)                         # every e^s - 1 = -1: no positive part, rows all 0
    assert torch.isfinite(tiny).all() and (tiny == 0).all()


def test_softpick_and_sigmoid_attention_outputs_by_hand():
    for option, weights in [("softpick", lambda s: _naive_softpick(s, CAUSAL)),
                            ("sigmoid", lambda s: torch.sigmoid(s - torch.log(torch.arange(1, 7.0, dtype=s.dtype)
                                                                              ).view(6, 1)) * CAUSAL)]:
        att = _att(f"model.attn.softmax={option}", scale=3.0)
        q, k, v, s = _qkv(att, X)
        torch.testing.assert_close(att(X), _out(att, X, weights(s), v))
        probs, raw = att.probabilities(q, k)
        torch.testing.assert_close(probs, weights(s), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(raw, s.masked_fill(~CAUSAL, float("-inf")))


def test_relu_attention_by_hand():
    """relu(q.k/sqrt(D)) / (t + 1) on the keys row t sees (Guo et al. 2024's softmax -> ReLU), unnormalized."""
    att = _att("model.attn.softmax=relu", scale=3.0)
    q, k, v, s = _qkv(att, X)
    n = torch.arange(1, 7, dtype=s.dtype).view(6, 1)
    expected = torch.where(CAUSAL, torch.clamp(s, min=0) / n, torch.zeros_like(s))
    torch.testing.assert_close(att(X), _out(att, X, expected, v))
    probs, raw = att.probabilities(q, k)
    torch.testing.assert_close(probs, expected, rtol=1e-10, atol=1e-12)
    assert not att.fused and (probs >= 0).all() and (probs[..., ~CAUSAL] == 0).all()


def test_sigmoid_bias_is_minus_log_visible_keys():
    att = _att("model.attn.softmax=sigmoid")
    q = torch.zeros(1, 2, 6, 8, dtype=torch.float64)             # all logits 0: weight of each key = 1/(1+n)
    probs, _ = att.probabilities(q, q)
    n = torch.arange(1, 7, dtype=torch.float64)
    torch.testing.assert_close(probs[0, 0].sum(-1), n / (1 + n))   # row t: (t+1) keys of sigmoid(-log(t+1))


def test_sink_fused_path_equals_concat_softmax_drop():
    att = _att("model.attn.sink=true", scale=2.0)
    assert att.fused and att.sink.weight.shape == (2,) and (att.sink.weight == 0).all()   # init 0
    with torch.no_grad():
        att.sink.weight.copy_(torch.tensor([1.5, -0.5]))
    q, k, v, s = _qkv(att, X)
    z = torch.cat([s.masked_fill(~CAUSAL, float("-inf")), att.sink.weight.view(1, 2, 1, 1).expand(2, 2, 6, 1)], -1)
    probs = torch.softmax(z, -1)[..., :-1]                        # HF gpt-oss eager: the sink column is dropped
    expected = _out(att, X, probs, v)
    got = att(X)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(att.probabilities(q, k)[0], probs)
    assert (probs.sum(-1) < 1).all()
    g = torch.randn_like(got)
    grad_fused = torch.autograd.grad(got, att.sink.weight, g)[0]
    grad_hand = torch.autograd.grad(expected, att.sink.weight, g)[0]
    torch.testing.assert_close(grad_fused, grad_hand)            # the sink learns through SDPA's attn_mask


@pytest.mark.parametrize("option,fused", [("model.attn.sink=true", True), ("model.attn.gate=headwise", True),
                                          ("model.attn.qkv_norm=true", True), ("model.attn.softmax=softpick", False),
                                          ("model.attn.softmax=sigmoid", False)])
def test_fused_sdpa_is_kept_where_it_expresses_the_variant(monkeypatch, option, fused):
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    build_model(debug_model_config(option))(torch.randint(0, 11, (2, 8)))
    assert len(calls) == (2 if fused else 0)


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_qkv_norm_normalizes_q_k_and_v_per_head(kind):
    model = build_model(debug_model_config("model.attn.qkv_norm=true", f"model.norm.kind={kind}", "model.init_std=0.5"))
    seen = {}
    att = model.blocks[1].attn
    for tap in ("q", "k", "v"):
        getattr(att, f"tap_{tap}").register_forward_hook(lambda m, i, o, tap=tap: seen.update({tap: o}))
    model(torch.randint(0, 11, (2, 8)))
    for name in ("q", "k", "v"):
        t = seen[name] - (seen[name].mean(-1, keepdim=True) if kind == "layernorm" else 0)
        rms = t.pow(2).mean(-1).sqrt()
        torch.testing.assert_close(rms, torch.ones_like(rms), rtol=0, atol=1e-3)
    assert type(att.norm_v).kind == kind


def test_qk_scale_is_the_kappa_transplant_by_hand():
    """q, k -> sqrt(kappa) z / rms(z) per head, no learned gain (Wortsman et al. 2023 Fig. 10): E[q^2] = kappa and
    the logits q.k/sqrt(D) grow with kappa; the fused SDPA path computes the written-out softmax."""
    kappa, eps = 1000.0, debug_model_config().norm.eps
    att = _att(f"model.attn.qk_scale={kappa}")
    assert [n for n, _ in att.named_parameters()] == ["qkv.weight", "proj.weight"] and att.fused
    q, k, v, _ = _qkv(att, X)
    q, k = (math.sqrt(kappa) * z / (z.pow(2).mean(-1, keepdim=True) + eps).sqrt() for z in (q, k))
    s = q @ k.transpose(-2, -1) / math.sqrt(att.head_dim)
    torch.testing.assert_close(att(X), _out(att, X, torch.softmax(s.masked_fill(~CAUSAL, float("-inf")), -1), v))
    seen = {}
    att.tap_q.register_forward_hook(lambda m, i, o: seen.update(q=o))
    att(X)
    torch.testing.assert_close(seen["q"].pow(2).mean(-1), torch.full((2, 2, 6), kappa, dtype=torch.float64),
                               rtol=1e-3, atol=0)                   # eps in the root: 1e-5 vs E[z^2] ~ 0.1
    assert s.abs().max() > 100 * _qkv(_att(), X)[3].abs().max()     # the transplanted scale reaches the logits


VARIANTS = ["model.attn.qk_scale=100", "model.attn.gate=elementwise", "model.attn.softmax=softpick", "model.attn.softmax=sigmoid",
            "model.attn.sink=true", "model.attn.qkv_norm=true", "model.attn.softmax=relu", "model.resid_clip=0.5",
            "model.norm.placement=hybrid", "model.norm.placement=hybrid model.norm.hybrid_first_pre=true"]


@pytest.mark.parametrize("option", VARIANTS)
@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_variants_are_causal(option, pos):
    torch.manual_seed(0)
    model = build_model(debug_model_config(*option.split(), f"model.pos={pos}")).eval()
    assert_causal(model, vocab_size=11)


@pytest.mark.parametrize("option", VARIANTS[:7])
def test_probed_probabilities_are_what_the_forward_multiplies(option):
    """The attention output equals probabilities(tapped q, tapped k) @ tapped v, projected (and gated)."""
    model = build_model(debug_model_config(option, "model.init_std=0.3")).double()
    att = model.blocks[0].attn
    seen = {}
    for tap in ("q", "k", "v"):
        getattr(att, f"tap_{tap}").register_forward_hook(lambda m, i, o, tap=tap: seen.update({tap: o}))
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    out = att(x)
    y = att.probabilities(seen["q"], seen["k"])[0] @ seen["v"]
    if att.gate is not None:
        y = y * torch.sigmoid(att.gate(x)).view(2, 6, 2, -1).transpose(1, 2)
    torch.testing.assert_close(out, att.proj(y.transpose(1, 2).reshape(2, 6, 16)))


def test_resid_clip_bounds_the_stream_after_every_block():
    torch.manual_seed(3)
    clipped = build_model(debug_model_config("model.resid_clip=0.05", "model.init_std=0.5")).double()
    seen = []
    for b in clipped.blocks:
        b.register_forward_hook(lambda m, i, o: seen.append(o.abs().max().item()))
    idx = torch.randint(0, 11, (2, 8))
    logits = clipped(idx)
    assert max(seen) > 0.05                                      # the blocks' own outputs exceed c ...
    x = clipped.wte(idx) + clipped.wpe(torch.arange(8))
    for b in clipped.blocks:
        x = b(x).clamp(-0.05, 0.05)                              # ... and the stream is clipped after each
    torch.testing.assert_close(logits, clipped.lm_head(clipped.norm_final(x)))


def _max_logits(att, x):
    _, _, _, s = _qkv(att, x)
    return s.masked_fill(~CAUSAL, float("-inf")).amax(dim=(0, 2, 3))


def test_qk_clip_rescales_exactly_the_heads_over_tau():
    model = build_model(debug_model_config("model.n_layer=1")).double()
    att = model.blocks[0].attn
    with torch.no_grad():
        att.qkv.weight[:8].mul_(40.0)                              # head 0's queries: large logits
    before = att.qkv.weight.detach().clone()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    S = _max_logits(att, x)
    S = S.detach()
    tau = float((S[0] + S[1]) / 2)
    assert S[0] > tau > S[1]
    clip = QKClip(model, tau)
    att(x)                                                         # the forward records the per-head max logit
    torch.testing.assert_close(att.max_logits, S)
    factors = clip.apply()
    gamma = math.sqrt(tau / S[0].item())
    torch.testing.assert_close(factors[0], torch.tensor([gamma, 1.0], dtype=factors.dtype))
    w = att.qkv.weight.detach()
    torch.testing.assert_close(w[:8], before[:8] * gamma)          # head 0: W_q and W_k rows times sqrt(tau/S)
    torch.testing.assert_close(w[16:24], before[16:24] * gamma)
    torch.testing.assert_close(w[8:16], before[8:16])              # head 1 and all of W_v untouched
    torch.testing.assert_close(w[24:40], before[24:40])
    torch.testing.assert_close(w[32:], before[32:])
    after = _max_logits(att, x)
    assert after[0].item() == pytest.approx(tau, rel=1e-9)          # the same batch now peaks at tau exactly
    assert after[1].item() == pytest.approx(S[1].item(), rel=1e-12)


def test_qk_clip_runs_inside_train_step_and_caps_the_logits():
    from normlab.training import step as step_mod
    from normlab.config import load_config as lc

    cfg = lc("debug", ["model.vocab_size=11", "model.n_layer=1", "train.qk_clip=0.5", "train.lr=1e-9",
                       "model.init_std=0.5"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    trainer = step_mod.Trainer(model, build_optimizer(model, cfg.train), torch.device("cpu"), cfg.train)
    assert trainer.qk_clip is not None and model.blocks[0].attn.record_max_logits

    class Batch:
        x = torch.randint(0, 11, (4, 8))
        y = torch.roll(x, -1, dims=1)
        src = None
    att = model.blocks[0].attn
    with torch.no_grad():
        model(Batch.x)
    assert att.max_logits.max() > 0.5                                # over tau before the step
    step_mod.train_step(trainer, Batch, 0)
    seen = {}
    att.tap_q.register_forward_hook(lambda m, i, o: seen.update(q=o))
    att.tap_k.register_forward_hook(lambda m, i, o: seen.update(k=o))
    with torch.no_grad():
        model(Batch.x)
    s = (seen["q"] @ seen["k"].transpose(-2, -1) / math.sqrt(8)).masked_fill(
        ~torch.ones(8, 8, dtype=torch.bool).tril(), float("-inf"))
    assert s.amax(dim=(0, 2, 3)).max().item() <= 0.5 * (1 + 1e-3)   # lr ~ 0: the clip alone sets the new maxima


@pytest.mark.parametrize("mode,expected", [("coupled", 1 - 0.5e-2 * 0.1), ("independent", 1 - 0.5 * 0.1)])
def test_weight_decay_modes(mode, expected):
    """One AdamW step with zero gradients moves p only by the decay: coupled p(1 - lr_t wd), independent
    p(1 - wd lr_t/lr) (the schedule's multiplier times wd), here at lr_t = lr/2."""
    cfg = load_config("debug", ["model.vocab_size=11", "train.weight_decay=0.1", "train.lr=1e-2",
                                f"train.weight_decay_mode={mode}", "train.fused_optimizer=fused"])
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg.train)
    w = model.blocks[0].mlp.fc.weight
    before = w.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    set_lr(opt, 0.5e-2)
    opt.step()
    torch.testing.assert_close(w.detach(), before * expected)
    assert torch.equal(model.wte.weight.grad, torch.zeros_like(model.wte.weight))


@pytest.mark.parametrize("overrides,message", [
    (["model.resid_clip=-1"], "model.resid_clip=-1.0 .* is out of range; allowed: \\[0, 10\\^9\\]"),
    (["train.qk_clip=-0.5"], "train.qk_clip=-0.5 .* is out of range"),
    (["probes.sink_threshold=0"], "probes.sink_threshold=0.0 .* is out of range; allowed: \\(0, 1\\]"),
    (["probes.update_every=-1"], "probes.update_every=-1 .* is out of range"),
    (["model.attn.gate=rowwise"], "model.attn.gate.*headwise"),
    (["model.attn.softmax=softmax1"], "model.attn.softmax.*softpick"),
    (["train.weight_decay_mode=decoupled"], "weight_decay_mode.*independent"),
    (["model.attn.sink=true", "model.attn.softmax=sigmoid"], "sink=true adds a logit to the softmax denominator"),
    (["model.attn.qkv_norm=true", "model.attn.qk_norm=true"], "qk_norm and qkv_norm are exclusive: qkv_norm"),
    (["model.attn.qk_scale=-1"], "model.attn.qk_scale=-1.* is out of range"),
    (["model.attn.qk_scale=10", "model.attn.qk_norm=true"], "qk_scale sets q and k to a fixed scale"),
    (["model.attn.qkv_norm=true", "model.norm.kind=dyt"], "qkv_norm normalizes q, k and v with model.norm.kind, but dyt"),
    (["train.qk_clip=100", "model.attn.qk_norm=true"], "train.qk_clip rescales W_q and W_k, but"),
    (["train.qk_clip=100", "model.norm.placement=hybrid"], "train.qk_clip rescales W_q and W_k"),
    (["train.qk_clip=100", "train.parallel=fsdp"], "which FSDP shards"),
    (["model.attn.gate=headwise", "model.arch=ngpt", "model.norm.placement=none", "model.pos=rope"],
     "options of the decoder-only GPT"),
    (["train.weight_decay_mode=independent", "train.weight_decay=0.1", "train.optimizer=adam"],
     "weight_decay_mode=independent sets a decoupled decay"),
])
def test_bad_values_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("debug", overrides)
