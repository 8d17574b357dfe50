"""normfree (seed 004): the attention_not_uniform gate is per seed at entropy/max < 0.9 with chance level 1 stated,
the overload claims are gated on the Pre-LN baseline (not on the norm-free arms they test), and the default meets
the issue's scale (context >= 64, head dim >= 16, init matched to GPT-2's per-token embedding norm)."""
from __future__ import annotations

import math

import numpy as np

from normlab.experiments import expand, load_experiment
from normlab.report.metrics import PRECONDITIONS
from normlab.report.runs import load_run

from runfixtures import write_run


def _run(root, variant, seed, per_head_norm):
    info = write_run(root, variant, seed, [2.0, 1.8], val=1.9)
    (root / info["dir"] / "probes").mkdir()
    np.savez(root / info["dir"] / "probes" / "step_000100.npz",
             **{"attn_entropy/per_head_norm": np.asarray(per_head_norm, float)})
    return load_run(root / info["dir"])


def test_attention_gate_needs_every_seed_below_0_9(tmp_path):
    gate = PRECONDITIONS["attention_not_uniform"]
    focused = [[0.99, 0.99], [0.70, 0.90]]          # layer 1's mean over heads: 0.80
    barely = [[0.99, 0.99], [0.90, 0.92]]           # 0.91: moved, but not past the gate
    groups = {"pre": [_run(tmp_path, "pre", s, focused) for s in range(4)] + [_run(tmp_path, "pre", 4, barely)]}
    ok, why = gate(groups, variants=["pre"])
    assert not ok and "4/5 seeds below 0.9" in why and "chance level 1.000" in why and "0.800-0.910" in why
    groups["pre"][-1] = _run(tmp_path / "b", "pre", 4, focused)
    ok, why = gate(groups, variants=["pre"])
    assert ok and "5/5 seeds below 0.9" in why
    ok, why = gate(groups, variants=["pre"], layers="early")       # the first half of the layers only: 0.99
    assert not ok and "0/5" in why


def test_attention_gate_without_probe_data_is_not_met(tmp_path):
    info = write_run(tmp_path, "pre", 0, [2.0], val=1.9)
    ok, why = PRECONDITIONS["attention_not_uniform"]({"pre": [load_run(tmp_path / info["dir"])]}, variants=["pre"])
    assert not ok and "no attention-entropy probe data in 1 of 1" in why
    ok, why = PRECONDITIONS["attention_not_uniform"]({}, variants=["pre"])
    assert not ok and "no runs" in why


def test_default_scale_and_claims():
    spec = load_experiment("normfree")
    (plan,) = [p for p in expand(spec, [], [0], "/tmp/unused", None) if p.variant == "preln-gelu"]
    m = plan.cfg.model
    assert m.block_size >= 64 and m.d_model // m.n_head >= 16
    assert math.isclose(m.init_std * math.sqrt(m.d_model), 0.02 * math.sqrt(768), rel_tol=0.05)  # GPT-2's 0.55
    claims = {c.id: c for c in spec.claim_specs}
    for cid in ("gelu-worse-than-relu-normfree", "entropic-overload-gelu"):
        pre = claims[cid].precondition
        assert pre["name"] == "attention_not_uniform" and set(pre["variants"]) == {"preln-gelu", "preln-relu"}
    assert not claims["ffn-spectral-inertia-gelu"].precondition          # attention-free: no gate
