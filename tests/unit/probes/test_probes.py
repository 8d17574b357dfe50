"""Each probe against a brute-force computation on a tiny float64 model; hooks always removed."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.config import ConfigError, ProbeConfig, load_config
from normlab.model import build_model
from normlab.norms import NORMS
from normlab.probes import PROBES, Recorder, flatten, probe_model
from normlab.probes.grad_norms import GradNormTracker
from normlab.probes.recorder import glob_match

from debugmodels import B, T, V, debug_model_config


def _model(*overrides):
    cfg = debug_model_config(*overrides)
    return build_model(cfg).double().eval(), cfg


def _idx():
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(3))


def _manual_forward(model, idx):
    """The Pre-LN GPT written out with explicit softmax attention: (attention probs, raw scores, block outputs)."""
    x = model.wte(idx) + model.wpe(torch.arange(idx.shape[1]))
    probs, scores, outs = [], [], []
    for block in model.blocks:
        a = block.attn
        q, k, v = a.qkv(block.norm_attn_in(x)).split(x.shape[-1], dim=-1)
        q, k, v = (t.view(B, T, a.n_head, a.head_dim).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-2, -1) / math.sqrt(a.head_dim)
        z = a.softcap * torch.tanh(s / a.softcap) if a.softcap else s
        e = torch.exp(z - z.max(-1, keepdim=True).values) * torch.ones(T, T).tril()
        p = e / e.sum(-1, keepdim=True)
        probs.append(p)
        scores.append(s)
        x = x + a.proj((p @ v).transpose(1, 2).reshape(B, T, -1))
        x = x + block.mlp(block.norm_mlp_in(x))
        outs.append(x)
    return probs, scores, outs, model.lm_head(model.norm_final(x))


@pytest.fixture(params=[0.0, 2.0], ids=["plain", "softcap2"])
def tiny(request):
    model, _ = _model(f"model.attn.logit_softcap={request.param}")
    with torch.no_grad():
        for p in model.parameters():  # larger weights: peaked attention, varied entropies
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(p.numel()))
    idx = _idx()
    with torch.no_grad():
        probs, scores, outs, logits = _manual_forward(model, idx)
        # the brute force is the same model (whose capped path runs its softmax in float32)
        torch.testing.assert_close(model(idx), logits, rtol=0, atol=1e-5)
    # the capped path's float32 softmax puts layer 1's inputs ~1e-7 away from the float64 brute force
    rtol = 1e-5 if request.param else 1e-10
    return model, idx, probs, scores, outs, logits, rtol


def test_glob_matches_by_segment():
    assert glob_match("blocks.*", "blocks.3") and not glob_match("blocks.*", "blocks.3.attn")
    assert glob_match("**.tap_q", "blocks.0.attn.tap_q") and glob_match("**.tap_q", "tap_q")
    assert glob_match("**.blocks.*", "decoder.blocks.1") and glob_match("**.blocks.*.*", "blocks.1.mlp")
    assert not glob_match("**.blocks.*.*", "blocks.1.attn.tap_q") and glob_match("norm_*", "norm_final")
    assert glob_match("", "") and not glob_match("**", "")


def test_attention_entropy_matches_explicit_softmax(tiny):
    model, idx, probs, *_, rtol = tiny
    s = probe_model(model, idx, ["attn_entropy"], ProbeConfig(overload_threshold=0.5))["attn_entropy"]
    for i, p in enumerate(probs):
        rows = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)  # B,H,T
        top = torch.log(torch.arange(1, T + 1, dtype=torch.float64))
        assert (rows >= -1e-12).all() and (rows <= top + 1e-9).all()   # within [0, log(t+1)] per query row
        np.testing.assert_allclose(s["per_head"][i], rows.mean(dim=(0, 2)).numpy(), rtol=rtol)
        norm = (rows[..., 1:] / top[1:]).mean(dim=(0, 2))
        np.testing.assert_allclose(s["per_head_norm"][i], norm.numpy(), rtol=rtol)
        assert s[f"overload/layer{i}"] == pytest.approx(float((norm >= 0.5).double().mean()))
        assert s[f"layer{i}"] == pytest.approx(float(rows.mean()), rel=rtol)
    assert list(s["labels"]) == ["layer0", "layer1"]


def test_uniform_attention_has_maximal_entropy_and_full_overload():
    model, _ = _model()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight[: 2 * 16].zero_()   # q = k = 0: every causal row is uniform
    s = probe_model(model, _idx(), ["attn_entropy"])["attn_entropy"]
    mean_top = float(torch.log(torch.arange(1, T + 1, dtype=torch.float64)).mean())
    np.testing.assert_allclose(s["per_head"], mean_top, rtol=1e-10)
    np.testing.assert_allclose(s["per_head_norm"], 1.0, rtol=1e-10)
    assert s["overload"] == 1.0


def test_sinks_equal_column_zero_and_logit_stats_the_scores(tiny):
    model, idx, probs, scores, _, logits, rtol = tiny
    out = probe_model(model, idx, ["attn_sinks", "logit_stats"])
    for i, (p, sc) in enumerate(zip(probs, scores)):
        np.testing.assert_allclose(out["attn_sinks"]["per_head"][i], p[..., 0].mean(dim=(0, 2)).numpy(), rtol=rtol)
        causal = sc.masked_select(torch.ones(T, T, dtype=torch.bool).tril().expand_as(sc))
        assert out["logit_stats"][f"attn_max/layer{i}"] == pytest.approx(float(causal.max()), rel=rtol)
    assert out["logit_stats"]["out_max_abs"] == pytest.approx(float(logits.abs().max()), rel=rtol)
    assert out["logit_stats"]["out_std"] == pytest.approx(float(logits.std()), rel=rtol)


def test_massive_activations_top3_median_and_positions(tiny):
    model, idx, _, _, outs, _, rtol = tiny
    s = probe_model(model, idx, ["massive_activations"])["massive_activations"]
    for i, h in enumerate(outs):
        flat = h.abs().flatten().sort(descending=True).values
        np.testing.assert_allclose(s["top3"][i], flat[:3].numpy(), rtol=rtol)
        lower_median = h.abs().flatten().sort().values[(h.numel() - 1) // 2]  # torch's median convention
        assert s[f"median/layer{i}"] == pytest.approx(float(lower_median), rel=rtol)
        for value, c, t in zip(s["top3"][i], s["top_channel"][i], s["top_position"][i]):
            assert h[:, t, c].abs().max().item() == pytest.approx(value, rel=rtol)


def test_nan_counts_locate_the_broken_layer():
    model, _ = _model()
    idx = _idx()
    clean = probe_model(model, idx, ["nan_counts"])["nan_counts"]
    assert clean["total"] == 0
    with torch.no_grad():
        model.blocks[1].mlp.fc.weight[0, 0] = float("nan")
    s = probe_model(model, idx, ["nan_counts"])["nan_counts"]
    C = model.cfg.d_model
    assert s["act/layer0"] == 0 and s["attn/layer0"] == 0 and s["attn/layer1"] == 0
    assert s["act/layer1"] == 2 * B * T * C     # the MLP output and the block output, entirely NaN


@pytest.mark.parametrize("kind", sorted(k for k in NORMS if k != "identity"))  # identity: refused in norm slots
def test_norm_weights_cover_every_norm_parameter(kind):
    model, _ = _model(f"model.norm.kind={kind}", "model.attn.qk_norm=true")
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)
    s = probe_model(model, _idx(), ["norm_weights"])["norm_weights"]
    expected = {}
    for name, module in model.named_modules():
        if isinstance(module, tuple(NORMS.values())):
            for pname, p in module.named_parameters(recurse=False):
                expected[f"{name}.{pname}".replace("blocks.", "layer")] = p
    vecs = {k[4:]: v for k, v in s.items() if k.startswith("vec/")}
    assert len(vecs) == len(expected) and any("norm_q" in k for k in vecs) == bool(expected)
    for key, p in expected.items():
        np.testing.assert_array_equal(vecs[key], p.detach().flatten().numpy())
        assert s[f"{key}/min_abs"] == pytest.approx(float(p.detach().abs().min()))


def test_grad_norms_per_layer_and_group_by_hand():
    model, _ = _model()
    idx = _idx()
    F.cross_entropy(model(idx).view(-1, V), idx.view(-1)).backward()
    named = dict(model.named_parameters())
    tracker = GradNormTracker(model)
    got = dict(zip(tracker.keys, tracker.measure().tolist()))

    def norm(names):
        return math.sqrt(sum(float(named[n].grad.pow(2).sum()) for n in names))
    assert got["layer1"] == pytest.approx(norm([n for n in named if n.startswith("blocks.1.")]))
    assert got["group/attn"] == pytest.approx(norm([n for n in named if ".attn." in n]))
    assert got["group/norm"] == pytest.approx(norm([n for n in named if "norm_" in n]))
    assert got["group/embed"] == pytest.approx(norm(["wte.weight", "wpe.weight"]))
    assert got["total"] == pytest.approx(float(nn.utils.clip_grad_norm_(model.parameters(), 1e9)))
    assert probe_model(model, idx, ["grad_norms"])["grad_norms"]["total"] == pytest.approx(got["total"])


def test_embedding_norms_and_missing_ngpt_alphas():
    model, _ = _model()
    out = probe_model(model, _idx(), ["embedding_norms", "ngpt_eigen_lrs"])
    np.testing.assert_allclose(out["embedding_norms"]["rows/wte"], model.wte.weight.norm(dim=-1).detach().numpy())
    assert out["embedding_norms"]["lm_head/max"] == pytest.approx(float(model.lm_head.weight.detach().norm(dim=-1).max()))
    assert out["ngpt_eigen_lrs"] == {}   # a model without eigen learning rates is skipped, not an error
    from normlab.model.mha import ScaledVector

    model.blocks[0].alpha_attn = ScaledVector(4, 0.05, 0.5)   # any module with a ScaledVector alpha is read
    s = probe_model(model, _idx(), ["ngpt_eigen_lrs"])["ngpt_eigen_lrs"]
    assert s["alpha_attn/layer0"] == pytest.approx(0.05) and s["vec/alpha_attn/layer0"].shape == (4,)


def _hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hooks_are_removed_also_after_an_exception():
    model, _ = _model()
    model.train()
    with Recorder(model, ["all"]) as rec:
        assert _hook_count(model) == len(rec.targets) + len(rec.input_targets) > 0
        model(_idx())
    assert _hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with Recorder(model, ["all"]):
            raise RuntimeError("boom")
    assert _hook_count(model) == 0
    with pytest.raises(ValueError):
        probe_model(model, torch.zeros(1, 99, dtype=torch.long))  # longer than block_size
    assert _hook_count(model) == 0 and model.training   # train mode restored


def test_recorder_unwraps_wrappers_and_flattens_keys():
    model, _ = _model()

    class Wrapper(nn.Module):  # the shape of DDP (.module) and torch.compile (._orig_mod)
        def __init__(self, inner):
            super().__init__()
            self.module = inner

        def forward(self, x):
            return self.module(x)
    wrapped = Wrapper(Wrapper(model))
    scalars, arrays = flatten(probe_model(wrapped, _idx(), ["all"]))
    assert "probe/attn_entropy/layer1" in scalars and "attn_entropy/per_head" in arrays
    assert set(k.split("/")[1] for k in scalars) <= set(PROBES)


def test_probe_names_are_validated():
    with pytest.raises(ConfigError, match="did you mean attn_entropy"):
        load_config("debug", ["probes.names=[attn_entropi]"])
    with pytest.raises(ConfigError, match="overload_threshold"):
        load_config("debug", ["probes.overload_threshold=1.5"])
