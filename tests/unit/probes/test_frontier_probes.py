"""The frontier probes against hand computations on tiny float64 models: activation kurtosis, update size and
Adam second moments, per-head max logit and q/k/v norms, sink rate, DyT/Derf saturation, residual-sink
channels, and attention entropy / mass for rows that do not sum to 1 (softpick, sigmoid, sink)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normlab.config import ProbeConfig, load_config
from normlab.model import build_model
from normlab.probes import PROBES, probe_model
from normlab.probes.update_stats import UpdateTracker

from debugmodels import B, T, V, sharp_model as _model


def _idx():
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(3))


def _capture(model, names):
    """Outputs (or, for names ending in ':in', first inputs) of the named modules in one eval forward."""
    seen, hooks = {}, []
    for n in names:
        mod_name, _, what = n.partition(":")
        m = model.get_submodule(mod_name)
        hooks.append(m.register_forward_hook(
            lambda mod, args, out, n=n, what=what: seen.__setitem__(n, (args[0] if what == "in" else out).detach())))
    with torch.no_grad():
        model(_idx())
    for h in hooks:
        h.remove()
    return seen


def test_act_kurtosis_by_hand():
    model = _model()
    s = probe_model(model, _idx(), ["act_kurtosis"])["act_kurtosis"]
    seen = _capture(model, ["blocks.0", "blocks.1.attn", "blocks.1.mlp"])
    for key, name in [("resid/layer0", "blocks.0"), ("attn/layer1", "blocks.1.attn"), ("mlp/layer1", "blocks.1.mlp")]:
        h = seen[name].reshape(-1, 16).numpy()
        c = h - h.mean(1, keepdims=True)
        expected = ((c ** 4).mean(1) / (c ** 2).mean(1) ** 2).mean()
        assert s[key] == pytest.approx(expected, rel=1e-10)
    assert set(s) == {f"{k}/layer{i}" for k in ("resid", "attn", "mlp") for i in (0, 1)}


def test_kurtosis_of_one_outlier_channel_is_large():
    from normlab.probes.act_kurtosis import token_kurtosis

    h = torch.zeros(4, 100, dtype=torch.float64)
    h[:, 7] = 50.0                                                 # one channel carries everything
    assert token_kurtosis(h) == pytest.approx(98.0102, rel=1e-4)   # (C-1)^2/(C-1) + ... -> ~C for a lone spike
    g = torch.randn(2000, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert token_kurtosis(g) == pytest.approx(3.0, abs=0.05)       # Gaussian channels: 3


def test_update_stats_by_hand():
    model = build_model(load_config("debug", [f"model.vocab_size={V}"]).model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.0)
    tracker = UpdateTracker(model, opt)
    named = dict(model.named_parameters())
    for _ in range(2):                                             # the second step: Adam has state, t = 2
        idx = _idx()
        opt.zero_grad()
        F.cross_entropy(model(idx).view(-1, V), torch.roll(idx, -1, 1).view(-1)).backward()
        before = {n: p.detach().clone() for n, p in named.items()}
        tracker.snapshot()
        opt.step()
    got = dict(zip(tracker.keys, tracker.measure().tolist()))
    layer1 = [n for n in named if n.startswith("blocks.1.")]
    dn = math.sqrt(sum(float((named[n].detach() - before[n]).pow(2).sum()) for n in layer1))
    pn = math.sqrt(sum(float(before[n].pow(2).sum()) for n in layer1))
    assert got["ratio/layer1"] == pytest.approx(dn / pn, rel=1e-4)
    v_hat = [opt.state[named[n]]["exp_avg_sq"] / (1 - 0.95 ** 2) for n in layer1]
    assert got["v_mean/layer1"] == pytest.approx(float(sum(v.sum() for v in v_hat) / sum(v.numel() for v in v_hat)),
                                                 rel=1e-5)
    assert got["v_max/layer1"] == pytest.approx(max(float(v.max()) for v in v_hat), rel=1e-6)
    total = math.sqrt(sum(float((named[n].detach() - before[n]).pow(2).sum()) for n in named))
    total /= math.sqrt(sum(float(before[n].pow(2).sum()) for n in named))
    assert got["ratio/total"] == pytest.approx(total, rel=1e-4)
    assert tracker.measure() is None                               # one measure per snapshot
    assert probe_model(model, _idx(), ["update_stats"])["update_stats"] == {}
    assert PROBES["update_stats"].stage == "update"


def test_update_stats_in_a_training_run(tmp_path):
    import json

    import normlab as nl

    cfg = nl.load_config("debug", ["train.steps=4", "probes.every=0", "probes.update_every=2", f"out_dir={tmp_path}"])
    nl.train(cfg)
    recs = [json.loads(line) for line in open(tmp_path / "debug" / "metrics.jsonl")]
    upd = [r for r in recs if "probe/update_stats/ratio/total" in r]
    assert [r["step"] for r in upd] == [0, 2]                      # every probes.update_every steps
    assert all(0 < r["probe/update_stats/ratio/layer0"] < 1 for r in upd)
    assert all(r["probe/update_stats/v_mean/layer1"] > 0 for r in upd)


def test_qkv_stats_by_hand():
    model = _model("model.pos=rope")
    s = probe_model(model, _idx(), ["qkv_stats"])["qkv_stats"]
    seen = _capture(model, [f"blocks.{i}.attn.tap_{t}" for i in (0, 1) for t in "qkv"])
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for i in (0, 1):
        q, k, v = (seen[f"blocks.{i}.attn.tap_{t}"] for t in "qkv")
        sc = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~causal, float("-inf"))
        np.testing.assert_allclose(s["per_head_max_logit"][i], sc.amax(dim=(0, 2, 3)).numpy(), rtol=1e-12)
        assert s[f"max/layer{i}"] == pytest.approx(float(sc.max()), rel=1e-12)
        for name, t in (("q", q), ("k", k), ("v", v)):
            assert s[f"{name}/layer{i}"] == pytest.approx(float(t.norm(dim=-1).mean()), rel=1e-12)


def test_sink_rate_counts_heads_over_the_threshold():
    model = _model()
    per_head = probe_model(model, _idx(), ["attn_sinks"])["attn_sinks"]["per_head"]   # L,H mean_t A[t, 0]
    threshold = float(np.sort(per_head.flatten())[1]) + 1e-9            # exactly 2 of the 4 heads are at or under it
    s = probe_model(model, _idx(), ["attn_sinks"], ProbeConfig(sink_threshold=threshold))["attn_sinks"]
    assert s["rate"] == pytest.approx(0.5)
    for i in (0, 1):
        assert s[f"rate/layer{i}"] == pytest.approx(float(np.mean(per_head[i] > threshold)))
    assert ProbeConfig().sink_threshold == 0.3                         # Gu et al. 2024


def test_sink_rate_and_entropy_with_a_learned_sink():
    """With a large sink logit the rows sum to far less than 1: mass on position 0 (raw) drops under 0.3, the
    entropy is that of the renormalized row and `mass` reports the row sums."""
    model = _model("model.attn.sink=true")
    idx = _idx()
    plain = probe_model(model, idx, ["attn_sinks", "attn_entropy"])
    with torch.no_grad():
        for b in model.blocks:
            b.attn.sink.weight.fill_(10.0)
    sunk = probe_model(model, idx, ["attn_sinks", "attn_entropy"])
    logits = probe_model(model, idx, ["qkv_stats"])["qkv_stats"]
    assert logits["sink/layer1"] == 10.0 and (logits["sink_logits"] == 10.0).all()
    assert plain["attn_sinks"]["rate"] >= 0.5 and sunk["attn_sinks"]["rate"] == 0.0
    seen = _capture(model, ["blocks.1.attn.tap_q", "blocks.1.attn.tap_k"])
    with torch.no_grad():
        probs, _ = model.blocks[1].attn.probabilities(seen["blocks.1.attn.tap_q"], seen["blocks.1.attn.tap_k"])
    assert sunk["attn_entropy"]["mass/layer1"] == pytest.approx(float(probs.sum(-1).mean()), rel=1e-12)
    assert sunk["attn_entropy"]["mass/layer1"] < 0.3 and plain["attn_entropy"]["mass/layer1"] < 1.0
    p = probs / probs.sum(-1, keepdim=True)
    ent = -(torch.special.xlogy(p, p)).sum(-1)
    np.testing.assert_allclose(sunk["attn_entropy"]["per_head"][1], ent.mean(dim=(0, 2)).numpy(), rtol=1e-10)


def test_entropy_of_softpick_rows_leaves_empty_rows_out():
    model = _model("model.attn.softmax=softpick", std=1.0)
    idx = _idx()
    s = probe_model(model, idx, ["attn_entropy"])["attn_entropy"]
    seen = _capture(model, ["blocks.0.attn.tap_q", "blocks.0.attn.tap_k"])
    with torch.no_grad():
        probs, _ = model.blocks[0].attn.probabilities(seen["blocks.0.attn.tap_q"], seen["blocks.0.attn.tap_k"])
    mass = probs.sum(-1)
    assert (mass == 0).any() and (mass > 0).any()                   # softpick gives rows with no mass at all
    p = probs / mass.unsqueeze(-1)
    ent = -(torch.special.xlogy(p, p)).sum(-1)                      # NaN for the empty rows
    np.testing.assert_allclose(s["per_head"][0], ent.nanmean(dim=(0, 2)).numpy(), rtol=1e-10)
    assert s["mass/layer0"] == pytest.approx(float(mass.mean()), rel=1e-12)
    assert np.isfinite(s["per_head"]).all()


@pytest.mark.parametrize("kind", ["dyt", "derf", "gated_dyt"])
def test_squash_saturation_by_hand(kind):
    model = _model(f"model.norm.kind={kind}", "model.norm.options={alpha_attn: 40.0, alpha_mlp: 0.1}", std=0.3)
    s = probe_model(model, _idx(), ["squash_saturation"])["squash_saturation"]
    names = ["blocks.0.norm_attn_in", "blocks.0.norm_mlp_in", "blocks.1.norm_attn_in", "blocks.1.norm_mlp_in",
             "norm_final"]
    seen = _capture(model, [f"{n}:in" for n in names])
    counts = {}
    for n in names:
        m = model.get_submodule(n)
        x = seen[f"{n}:in"]
        arg = m.alpha * x + (m.shift if kind == "derf" else 0)
        over = (arg.abs() > 2).double()
        assert s[f"module/{n.replace('blocks.', 'layer')}"] == pytest.approx(float(over.mean()))
        counts.setdefault(n.split(".norm")[0], []).append(over)
    layer0 = torch.cat([o.flatten() for o in counts["blocks.0"]])
    assert s["share/layer0"] == pytest.approx(float(layer0.mean()))
    assert s["module/layer0.norm_attn_in"] > 0.3 > s["module/layer0.norm_mlp_in"]   # alpha 40 saturates, 0.1 does not
    assert "final" in s and 0 < s["all"] < 1
    assert probe_model(_model(), _idx(), ["squash_saturation"])["squash_saturation"] == {}   # RMSNorm: nothing to read


def test_resid_channels_ranks_the_sink_channel_first():
    model = _model()
    with torch.no_grad():
        model.wte.weight[:, 5] += 100.0                              # channel 5 of every token: a residual sink
    s = probe_model(model, _idx(), ["resid_channels"])["resid_channels"]
    seen = _capture(model, ["blocks.0", "blocks.1"])
    for i in (0, 1):
        means = seen[f"blocks.{i}"].abs().reshape(-1, 16).mean(0).numpy()
        np.testing.assert_allclose(s[f"vec/layer{i}"], means, rtol=1e-12)
        np.testing.assert_array_equal(s["top_channels"][i], np.argsort(-means, kind="stable")[:5])
        np.testing.assert_allclose(s["top_values"][i], np.sort(means)[::-1][:5], rtol=1e-12)
        assert s[f"ratio/layer{i}"] == pytest.approx(means.max() / np.median(means), rel=1e-12)
        assert s["top_channels"][i][0] == 5 and s[f"ratio/layer{i}"] > 5


def test_every_new_probe_declares_captioned_figures():
    for name in ("act_kurtosis", "update_stats", "qkv_stats", "squash_saturation", "resid_channels", "attn_sinks"):
        figs = PROBES[name].figures
        assert figs and all(f.caption and f.title and f.file.endswith(".png") for f in figs)
