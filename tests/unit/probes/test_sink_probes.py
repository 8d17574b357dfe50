"""The sink-mechanism probes against their formulas on tiny float64 shapes: value drain, residual peak,
active vs dormant heads (with and without position roles), the gradient sink (autograd by hand, no parameter
.grad touched) and the loss increase when attention to position 0 is removed (for softmax: the softmax over
the other keys)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normlab.probes import probe_model
from normlab.probes.active_dormant import bos_mass_by_role
from normlab.probes.grad_sink import gradient_ratio
from normlab.probes.resid_peak import peak_ratio
from normlab.probes.sink_ablation import without_first
from normlab.probes.value_drain import drain_ratio

from debugmodels import B, T, V, sharp_model as _model


def _xy():
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)


def test_drain_ratio_by_hand():
    v = torch.zeros(2, 1, 3, 2, dtype=torch.float64)
    v[:, 0, 0] = torch.tensor([[0.3, 0.4], [0.0, 0.1]])     # ||v_0|| = 0.5 and 0.1: mean 0.3
    v[:, 0, 1:] = torch.tensor([3.0, 4.0])                   # every other ||v_t|| = 5
    assert drain_ratio(v)[0] == pytest.approx(0.3 / 5)


def test_value_drain_probe_reads_the_tapped_values():
    model = _model()
    x, _ = _xy()
    seen = {}
    h = model.blocks[1].attn.tap_v.register_forward_hook(lambda m, a, o: seen.__setitem__("v", o.detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    out = probe_model(model, x, ["value_drain"])["value_drain"]
    norms = seen["v"].norm(dim=-1)
    expected = norms[..., 0].mean(0) / norms[..., 1:].mean(dim=(0, 2))
    np.testing.assert_allclose(out["per_head"][1], expected.numpy(), rtol=1e-10)
    assert out["layer1"] == pytest.approx(float(expected.min())) and out["per_head"].shape == (2, 2)


def test_peak_ratio_by_hand():
    h = torch.ones(2, 4, 3, dtype=torch.float64)             # ||h_t|| = sqrt(3)
    h[0, 0] *= 10
    h[1, 0] *= 20
    h[1, 3] *= 3                                              # the median of the 6 others stays sqrt(3)
    ratio, first = peak_ratio(h)
    assert first == pytest.approx(15 * math.sqrt(3)) and ratio == pytest.approx(15.0)


def test_resid_peak_probe_per_layer():
    model = _model()
    x, _ = _xy()
    out = probe_model(model, x, ["resid_peak"])["resid_peak"]
    seen = {}
    hooks = [b.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o.detach()))
             for i, b in enumerate(model.blocks)]
    with torch.no_grad():
        model(x)
    for hk in hooks:
        hk.remove()
    for i in range(2):
        n = seen[i].norm(dim=-1)
        assert out[f"ratio/layer{i}"] == pytest.approx(float(n[:, 0].mean() / n[:, 1:].flatten().median()))
    assert out["max"] == pytest.approx(max(out["ratio/layer0"], out["ratio/layer1"]))


def test_bos_mass_by_role_by_hand():
    probs = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    probs[0, 0, :, 0] = torch.tensor([1.0, 0.9, 0.1, 0.7])   # A[t, 0]
    roles = torch.tensor([[0, 0, 1, 0]])                      # row 2's input is a trigger
    plain, trig = bos_mass_by_role(probs, roles)
    assert plain[0] == pytest.approx(0.8) and trig[0] == pytest.approx(0.1)   # row 0 (BOS itself) left out
    plain_all, none = bos_mass_by_role(probs, None)
    assert none is None and plain_all[0] == pytest.approx((0.9 + 0.1 + 0.7) / 3)
    _, empty = bos_mass_by_role(probs, torch.zeros(1, 4, dtype=torch.long))
    assert np.isnan(empty[0])                                  # no trigger rows: nan, not 0


def test_active_dormant_probe_with_and_without_roles():
    model = _model()
    x, _ = _xy()
    roles = (x % 3 == 0).to(torch.int8)
    out = probe_model(model, x, ["active_dormant"], roles=roles)["active_dormant"]
    probs = out["plain"], out["trigger"]
    assert out["roles_known"] == 1.0 and probs[0].shape == probs[1].shape == (2, 2)
    assert out["gap/layer0"] == pytest.approx(float(np.nanmax(out["plain"][0] - out["trigger"][0])))
    bare = probe_model(model, x, ["active_dormant"])["active_dormant"]
    assert bare["roles_known"] == 0.0 and "trigger" not in bare and not any(k.startswith("gap/") for k in bare)


def test_gradient_ratio_by_hand():
    g = torch.ones(2, 3, 1, dtype=torch.float64)
    g[:, 0] = torch.tensor([[4.0], [6.0]])
    ratio, profile = gradient_ratio(g)
    assert ratio == pytest.approx(5.0) and profile.tolist() == [5.0, 1.0, 1.0]


def test_grad_sink_probe_matches_autograd_and_leaves_grads_alone():
    model = _model()
    x, y = _xy()
    out = probe_model(model, x, ["grad_sink"], y=y)["grad_sink"]
    assert all(p.grad is None for p in model.parameters())
    kept = {}
    h = model.blocks[0].register_forward_pre_hook(lambda m, a: kept.__setitem__("embed", a[0]))
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    h.remove()
    g = torch.autograd.grad(loss, kept["embed"])[0].norm(dim=-1)
    assert out["ratio/embed"] == pytest.approx(float(g[:, 0].mean() / g[:, 1:].flatten().median()), rel=1e-6)
    assert set(out) >= {"ratio/layer0", "ratio/layer1", "profile/embed"} and out["profile/embed"].shape == (T,)


def test_without_first_is_the_softmax_over_the_other_keys():
    z = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hidden = ~torch.ones(5, 5, dtype=torch.bool).tril()
    probs = torch.softmax(z.masked_fill(hidden, float("-inf")), -1)
    cut = without_first(probs)
    rest = z[..., 1:].masked_fill(hidden[:, 1:], float("-inf"))
    torch.testing.assert_close(cut[..., 1:, 1:], torch.softmax(rest[..., 1:, :], -1))
    assert (cut[..., 1:, 0] == 0).all() and torch.equal(cut[..., 0, :], probs[..., 0, :])
    half = torch.tensor([[0.2, 0.1, 0.0], [0.1, 0.1, 0.1]], dtype=torch.float64)   # unnormalized rows (relu)
    torch.testing.assert_close(without_first(half)[1], torch.tensor([0.0, 0.15, 0.15], dtype=torch.float64))


@pytest.mark.parametrize("option", ["model.attn.softmax=softmax", "model.attn.softmax=relu", "model.attn.sink=true"])
def test_sink_ablation_probe(option):
    model = _model(option)
    x, y = _xy()
    with torch.no_grad():
        before = model(x)
    out = probe_model(model, x, ["sink_ablation"], y=y)["sink_ablation"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)          # the patch is undone
    assert all("_attend" not in b.attn.__dict__ for b in model.blocks)
    full = F.cross_entropy(before.flatten(0, 1), y.flatten()).item()
    assert out["loss"] == pytest.approx(full)
    # by hand for layer 1: its forward with the cut probabilities
    att = model.blocks[1].attn
    att._attend = lambda q, k, v: without_first(att.probabilities(q, k)[0]) @ v
    with torch.no_grad():
        cut = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    del att._attend
    assert out["layer1"] == pytest.approx(cut - full) and set(out) == {"loss", "layer0", "layer1", "all"}


def test_attn_sinks_records_the_uniform_baseline_beside_the_rate():
    model = _model()
    x, _ = _xy()
    out = probe_model(model, x, ["attn_sinks"])["attn_sinks"]
    assert out["length"] == T and out["uniform"] == pytest.approx(sum(1 / t for t in range(1, T + 1)) / T)
    with torch.no_grad():                                     # a uniform head: all logits equal (q = 0)
        for b in model.blocks:
            b.attn.qkv.weight[:16].zero_()
    flat = probe_model(model, x, ["attn_sinks"])["attn_sinks"]
    np.testing.assert_allclose(flat["per_head"], flat["uniform"], rtol=1e-12)
