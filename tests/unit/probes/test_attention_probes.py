"""Probed attention probabilities equal a hand computation for every model family: the GPT (with clamp and
soft-cap), nGPT (softmax scale +sqrt(D), unit q and k), and the encoder-decoder's encoder self-attention
(bidirectional, source padding), decoder self-attention (causal) and cross-attention (source padding)."""
import math

import pytest
import torch

import normlab as nl
from normlab.config import load_config
from normlab.data import IGNORE
from normlab.model import build_model


def _taps(model):
    """q and k of every attention module, captured by hand (no Recorder) in forward order."""
    seen = {}
    hooks = []
    for name, m in model.named_modules():
        for tap in ("tap_q", "tap_k"):
            if hasattr(m, tap):
                hooks.append(getattr(m, tap).register_forward_hook(
                    lambda mod, a, out, name=name, tap=tap: seen.setdefault(name, {}).__setitem__(tap, out.double())))
    return seen, hooks


def _softmax_rows(scores, mask):
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1)


def _probe(model, x, **kw):
    return nl.probe_model(model, x, ["attn_entropy", "logit_stats"], **kw)


@pytest.mark.parametrize("extra", [[], ["model.attn.logit_clamp=0.5"], ["model.attn.logit_softcap=0.7"]])
def test_gpt_attention_matches_hand_math(extra):
    model = build_model(load_config("debug", ["model.vocab_size=11", "model.pos=rope", *extra]).model).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)   # large logits, so clamp and soft-cap act
    x = torch.randint(0, 11, (2, 7))
    seen, hooks = _taps(model)
    from normlab.probes.recorder import Recorder

    from normlab.probes.recorder import View

    with torch.no_grad(), Recorder(model, ["attn_entropy"]) as rec:
        model(x)
        view_maps = View(model, rec.outputs).attention
    for h in hooks:
        h.remove()
    cfg = model.cfg.attn
    for i, amap in enumerate(view_maps):
        q, k = seen[f"blocks.{i}.attn"]["tap_q"], seen[f"blocks.{i}.attn"]["tap_k"]
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if cfg.logit_softcap:
            s = cfg.logit_softcap * torch.tanh(s / cfg.logit_softcap)
        if cfg.logit_clamp:
            s = s.clamp(-cfg.logit_clamp, cfg.logit_clamp)
        expected = _softmax_rows(s, torch.ones(7, 7, dtype=torch.bool).tril())
        torch.testing.assert_close(amap.probs, expected, rtol=1e-10, atol=1e-12)
        assert amap.causal and amap.label == f"layer{i}"


def test_gpt_explicit_attention_is_the_probed_one():
    """With a clamp the forward itself runs probabilities() @ v: the model output equals a hand computation."""
    model = build_model(load_config("debug", ["model.vocab_size=11", "model.attn.logit_clamp=0.3"]).model).double()
    attn = model.blocks[0].attn
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    q, k, v = attn.qkv(x).split(16, -1)
    q, k, v = (t.view(2, 5, 2, 8).transpose(1, 2) for t in (q, k, v))
    p = _softmax_rows((q @ k.transpose(-2, -1) / math.sqrt(8)).clamp(-0.3, 0.3), torch.ones(5, 5, dtype=torch.bool).tril())
    expected = attn.proj((p @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attn(x), expected)


NGPT = ["model.arch=ngpt", "model.norm.placement=none", "model.pos=rope", "model.mlp=swiglu"]


def test_ngpt_attention_uses_plus_sqrt_d():
    model = build_model(load_config("debug", ["model.vocab_size=11", *NGPT]).model).double().eval()
    x = torch.randint(0, 11, (2, 6))
    seen, hooks = _taps(model)
    out = _probe(model, x)
    for h in hooks:
        h.remove()
    q, k = seen["blocks.0.attn"]["tap_q"], seen["blocks.0.attn"]["tap_k"]
    s = (q @ k.transpose(-2, -1)) * math.sqrt(q.shape[-1])   # +sqrt(D), not 1/sqrt(D)
    p = _softmax_rows(s, torch.ones(6, 6, dtype=torch.bool).tril())
    ent = -(torch.special.xlogy(p, p)).sum(-1).mean().item()
    assert out["attn_entropy"]["layer0"] == pytest.approx(ent, rel=1e-9)
    assert out["logit_stats"]["attn_max/layer0"] == pytest.approx(
        s.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf")).max().item(), rel=1e-9)


@pytest.mark.parametrize("arch", [[], NGPT[:1] + ["model.norm.placement=none"]])
def test_encoder_decoder_attention_masks(arch):
    cfg = load_config("debug", ["model.vocab_size=11", "model.encoder_layers=1", "model.n_layer=1", "model.pos=rope",
                                "data.task=reverse", *arch]).model
    model = build_model(cfg).double().eval()
    src = torch.tensor([[10, 1, 2, 3, 10], [10, 4, 10, IGNORE, IGNORE]])
    tgt = torch.tensor([[10, 3, 2, 1], [10, 4, 10, 10]])
    seen, hooks = _taps(model)
    from normlab.probes.recorder import Recorder, View

    with torch.no_grad(), Recorder(model, ["attn_entropy"]) as rec:
        model(tgt, src=src)
        maps = {m.label: m for m in View(model, rec.outputs).attention}
    for h in hooks:
        h.remove()
    pad = src == IGNORE
    enc = model.encoder[0].attn
    scale = enc.scale
    assert scale == (math.sqrt(8) if arch else 1 / math.sqrt(8))
    cases = {"encoder.0.attn": (pad, False), "decoder.0.attn": (None, True), "decoder.0.cross": (pad, False)}
    for name, (key_pad, causal) in cases.items():
        q, k = seen[name]["tap_q"], seen[name]["tap_k"]
        s = (q @ k.transpose(-2, -1)) * scale
        T, S = s.shape[-2:]
        mask = torch.ones(2, 1, T, S, dtype=torch.bool)
        if causal:
            mask &= torch.ones(T, S, dtype=torch.bool).tril()
        if key_pad is not None:
            mask &= ~key_pad[:, None, None, :]
        expected = _softmax_rows(s, mask)
        got = _find(maps, name)
        torch.testing.assert_close(got.probs, expected, rtol=1e-10, atol=1e-12)
        assert got.causal == causal
        if key_pad is not None:   # the padded source positions of row 1 get exactly no attention
            assert torch.all(got.probs[1][..., key_pad[1]] == 0)


def _find(maps, module_name):
    """The AttentionMap of a module: labels are layer-style (decoder.0 -> 'decoder'+... as layer_of gives)."""
    from normlab.probes.recorder import layer_of

    parent = module_name
    label = layer_of(parent)
    if not parent.endswith(".attn") and label != parent:
        label += "." + parent.rsplit(".", 1)[-1]
    return maps[label]


def test_finite_max_is_the_max_of_the_finite_entries_or_nan():
    """The definition, case by case: masked -inf entries are left out; a NaN or +inf anywhere, or no finite entry
    at all, gives NaN (what the report reads as 'not finite at this step')."""
    import math

    from normlab.probes.logit_stats import finite_max

    inf = float("inf")
    assert finite_max(torch.tensor([[1.0, -inf], [3.5, -inf]])) == 3.5
    assert finite_max(torch.tensor([-2.0, -inf, -7.0])) == -2.0
    for bad in ([1.0, float("nan")], [1.0, inf], [-inf, -inf], []):
        assert math.isnan(finite_max(torch.tensor(bad)))
