"""Contract: a stacked member records what a plain run of the same config records, for every registered probe
and callback (probes.names=[all], so a probe added later is covered without editing this test), under every
optimizer; both engines call after_backward, so gradient and update probes fire in both."""
import numpy as np
import pytest
import torch

import normlab as nl
from normlab.probes import PROBES
from normlab.rundir import read_metrics
from normlab.training.stacked_loop import train_stacked

from debugmodels import run_config

EVERYTHING = ["train.steps=10", "train.eval_every=5", "probes.every=5", "probes.grad_every=1",
              "probes.update_every=5", "probes.names=[all]"]


def _cfg(tmp_path, name, seed, *extra):
    return run_config("prepost", tmp_path, name, seed, *EVERYTHING, *extra)


def _keys_by_step(records):
    out: dict[int, set] = {}
    for r in records:
        out.setdefault(r["step"], set()).update(r)
    return out


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "muon"])
def test_a_stacked_member_records_exactly_the_keys_of_a_plain_run(tmp_path, optimizer):
    torch.set_num_threads(1)
    extra = [f"train.optimizer={optimizer}"]
    cfgs = [_cfg(tmp_path, f"s{seed}", seed, *extra) for seed in (0, 1)]
    train_stacked(cfgs, [tmp_path / c.name for c in cfgs])
    nl.train(_cfg(tmp_path, "plain", 1, *extra))
    member = read_metrics(tmp_path / "s1" / "metrics.jsonl")
    plain = read_metrics(tmp_path / "plain" / "metrics.jsonl")
    assert _keys_by_step(member) == _keys_by_step(plain)
    keys = set().union(*(r.keys() for r in plain))
    for name, probe in PROBES.items():   # every probe that records scalars during training shows up
        if probe.stage in ("gradients", "update"):
            assert any(k.startswith(f"probe/{name}/") for k in keys), name
    # the update probe measures the same step in both engines
    first = {k: v for r in member for k, v in r.items() if k.startswith("probe/update_stats/ratio") and r["step"] == 0}
    plain0 = {k: v for r in plain for k, v in r.items() if k.startswith("probe/update_stats/ratio") and r["step"] == 0}
    assert first.keys() == plain0.keys() and first
    for k in first:
        assert first[k] == pytest.approx(plain0[k], rel=1e-3), k
    # Adam's second moments exist where Adam runs: none under sgd, the AdamW half under muon
    v = [r["probe/update_stats/v_mean/lm_head"] for r in member if "probe/update_stats/v_mean/lm_head" in r]
    assert v and all((isinstance(x, str) or np.isnan(x)) if optimizer == "sgd" else x > 0 for x in v)
