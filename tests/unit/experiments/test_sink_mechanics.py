"""sink-mechanics and seed 000's weight-analysis claims: the experiment loads (claims with preconditions, the
arms stack as declared, the smoke preset is tiny), the uniform causal baseline H_T/T, the metrics on fixture
runs, the preconditions' messages (sinks beside H_T/T, "untestable here" with the measured ratio), and the
sinks experiment's residual-sink-channel metrics (robust z of the gain, lambda_1 and gate on channel j*)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from normlab.experiments import expand, load_experiment
from normlab.report.runs import load_run
from normlab.training.stacked_loop import stack_key

from runfixtures import write_run


def _m():
    return load_experiment("sink-mechanics").module("metrics")


def _run(root, variant, seed, arrays=None, scalars=None, config=None, summary=None, val=1.6):
    info = write_run(root, variant, seed, [2.0, 1.8], val=val, probes={400: scalars} if scalars else None,
                     config=config or {"model": {"vocab_size": 28, "block_size": 64, "n_layer": 2},
                                       "data": {"task": "lm"}},
                     summary=summary or {"data": {"val": {"entropy_floor_nats": 1.5358}}})
    if arrays:
        (root / info["dir"] / "probes").mkdir()
        np.savez(root / info["dir"] / "probes" / "step_000400.npz", **arrays)
    return load_run(root / info["dir"])


def test_uniform_baseline_is_harmonic_over_T():
    m = _m()
    assert m.uniform_mass(1) == 1.0 and m.uniform_mass(8) == pytest.approx(0.3397, abs=1e-4)
    assert m.uniform_mass(16) == pytest.approx(0.2113, abs=1e-4) and m.uniform_mass(64) == pytest.approx(0.0742, abs=1e-4)


def test_experiment_loads_and_its_arms_stack_as_declared():
    spec = load_experiment("sink-mechanics")
    assert spec.seeds >= 5 and spec.seeds_why and "smoke" in spec.presets
    assert all(c.precondition and c.source and c.seed_value for c in spec.claim_specs)
    plans = expand(spec, [], None, "/tmp/unused", None)
    keys = {p.variant: stack_key(p.cfg) for p in plans}
    assert keys["baseline"] == keys["wd0.1"] == keys["wd0.5"]                  # one shape, one stack
    assert len({keys[v] for v in ("baseline", "relu", "sink", "gated", "peri", "sgd", "muon")}) == 7
    assert {p.cfg.data.source for p in plans} == {"synthetic:bigram-backcopy"}
    smoke = expand(spec, [], None, "/tmp/unused", "smoke")
    assert all(p.cfg.train.steps <= 5 for p in smoke)


def test_metrics_on_a_fixture_run(tmp_path):
    m = _m()
    arrays = {"attn_sinks/per_head": np.array([[0.6, 0.1], [0.2, 0.05]]),
              "value_drain/per_head": np.array([[0.1, 1.0], [0.9, 1.1]]),
              "resid_peak/ratio": np.array([3.0, 20.0]),
              "active_dormant/plain": np.array([[0.8, 0.1], [0.2, 0.1]]),
              "active_dormant/trigger": np.array([[0.05, 0.1], [0.2, 0.1]])}
    scalars = {"grad_sink/ratio/embed": 100.0, "sink_ablation/all": 0.25, "resid_channels/ratio/layer0": 4.0,
               "resid_channels/ratio/layer1": 2.0}
    run = _run(tmp_path, "baseline", 0, arrays, scalars)
    assert m.sink_rate(run) == 0.25 and m.max_head_sink(run) == 0.6 and m.bos_mass(run) == pytest.approx(0.2375)
    assert m.sink_excess(run) == pytest.approx(0.6 / m.uniform_mass(64))
    assert m.value_drain_log10(run) == pytest.approx(-1.0) and m.resid_peak_log10(run) == pytest.approx(math.log10(20))
    assert m.dormant_gap(run) == pytest.approx(0.75) and m.grad_sink_log10(run) == pytest.approx(2.0)
    assert m.sink_ablation_cost(run) == 0.25 and m.channel_outlier_log10(run) == pytest.approx(math.log10(4))
    assert m.loss_over_floor(run) == pytest.approx(1.6 - 1.5358)


def test_preconditions_say_what_was_measured(tmp_path):
    m = _m()
    sunk = [_run(tmp_path / "a", "baseline", k, {"attn_sinks/per_head": np.array([[0.5 + 0.01 * k, 0.1]])})
            for k in range(3)]
    ok, why = m.sinks_on_every_seed({"baseline": sunk}, ["baseline"])
    assert ok and "3 of 3 runs" in why and "uniform H_T/T = 0.074 at T = 64" in why
    flat = sunk + [_run(tmp_path / "b", "baseline", 7, {"attn_sinks/per_head": np.array([[0.08, 0.07]])})]
    ok, why = m.sinks_on_every_seed({"baseline": flat}, ["baseline"])
    assert not ok and "3 of 4 runs" in why
    low = [_run(tmp_path / "c", "sgd", k, {"resid_peak/ratio": np.array([1.2, 0.8])}, val=2.5) for k in range(2)]
    ok, why = m.resid_peak_present({"baseline": low, "sgd": low}, ["baseline"], learned=["sgd"])
    assert not ok and "residual peak ratio 1.2-1.2" in why and "loss - floor 0.964" in why


def test_claims_carry_their_preconditions():
    claims = {c.id: c for c in load_experiment("sink-mechanics").claim_specs}
    assert claims["baseline-sinks"].precondition["name"] == "sinks_on_every_seed"
    assert claims["peri-decouples-peaks"].precondition["name"] == "resid_peak_present"
    assert claims["sgd-mitigates-peaks"].precondition["learned"] == ["sgd"]


def test_seed000_channel_metrics(tmp_path):
    s = load_experiment("sinks").module("metrics")
    C = 16
    means = np.ones(C)
    means[5] = 30.0                                                      # a residual sink after block 0
    gain = np.linspace(0.9, 1.1, C)
    gain[5] = 0.01
    pre = np.ones(C) + np.linspace(-0.05, 0.05, C)
    pre[5] = 7.0
    arrays = {"resid_channels/vec/layer0": means, "resid_channels/vec/layer1": np.ones(C) * 2,
              "norm_weights/vec/layer1.norm_attn_in.weight": gain,
              "norm_weights/vec/layer1.norm_attn_in.pre_scale": pre,
              "norm_gates/vec/layer1.norm_attn_in": gain}
    cfg = {"model": {"vocab_size": 27, "n_layer": 2}, "data": {"task": "lm"}}
    run = _run(tmp_path, "baseline", 0, arrays, config=cfg)
    assert s.residual_sink(run) == (0, 5, pytest.approx(30.0))
    others = np.delete(gain, 5)
    z = (0.01 - np.median(others)) / (1.4826 * np.median(np.abs(others - np.median(others))))
    assert s.sink_channel_gain_z(run) == pytest.approx(z) and z < -3
    assert s.sink_channel_preaffine_z(run) > 3 and s.sink_channel_gate_z(run) == pytest.approx(z)
    assert s.residual_sink_present({"baseline": [run]}, ["baseline"])[0]
    # no residual sink: untestable, with the measured ratio
    flat = _run(tmp_path / "f", "baseline", 1, {"resid_channels/vec/layer0": np.linspace(1, 3.3, C),
                                                "norm_weights/vec/layer1.norm_attn_in.weight": gain}, config=cfg)
    assert s.sink_channel_gain_z(flat) is None
    ok, why = s.residual_sink_present({"baseline": [flat]}, ["baseline"])
    assert not ok and "ratio 1.53-1.53" in why and "needs >= 10" in why
    # the last layer's sink is read by the final norm
    last = _run(tmp_path / "l", "baseline", 2, {"resid_channels/vec/layer1": means,
                                                "norm_weights/vec/norm_final.weight": gain}, config=cfg)
    assert s.sink_channel_gain_z(last) == pytest.approx(z)
    claims = {c.id: c for c in load_experiment("sinks").claim_specs}
    for cid in ("sink-channel-gain-dip", "sink-channel-preaffine-grows", "sink-channel-gate-low"):
        assert claims[cid].precondition["name"] == "residual_sink_present"


@pytest.mark.slow
def test_smoke_end_to_end(tmp_path):
    from click.testing import CliRunner

    from normlab.cli import main

    result = CliRunner().invoke(main, ["run", "sink-mechanics", "--preset", "smoke", "--seeds", "2",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = next(tmp_path.glob("*/report.md")).read_text()
    assert "Entropy floor of the synthetic source" in report and "sink_mechanics.png" in report
