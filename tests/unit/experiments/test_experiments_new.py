"""The published-results experiments: proxies (Wortsman et al. 2023), depth (The Curse of Depth / Peri-LN),
dyt-regime (Verma 2026) and sinks with Table 1 of arXiv 2601.22966. Each folder loads with its variants,
claims and presets; presets may restrict variants and override per axis value; the probes they read
(depth_stats, output_lse) match hand computations; their metrics on fixture runs;
data.train_max_bytes caps only the train split; each --preset smoke runs end to end (one in the
default suite, the rest marked slow) and its report leads with the experiment's figure."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import normlab as nl
from normlab.config import ConfigError
from normlab.data import IGNORE
from normlab.experiments import expand, load_experiment
from normlab.probes import probe_model
from normlab.report.runs import load_run
from normlab.training.stacked_loop import stack_key

from debugmodels import debug_model
from runfixtures import write_run

NEW = ("proxies", "depth", "dyt-regime", "sinks")


@pytest.mark.parametrize("name", NEW)
def test_each_new_experiment_loads_with_claims_presets_and_a_lead_figure(name):
    spec = load_experiment(name)
    assert {"smoke", "gpu"} <= set(spec.presets)
    assert spec.seeds >= 5 and spec.seeds_why and spec.seed_setup
    for claim in spec.claim_specs:
        assert claim.source and claim.seed_value and claim.text, claim.id
        assert any(ref in claim.source for ref in ("arXiv", "seed 000", "dyt-composition-study")), claim.id
    gpu = expand(spec, [], None, "/tmp/unused", "gpu")
    assert {p.cfg.train.device for p in gpu} == {"cuda"}
    smoke = expand(spec, [], None, "/tmp/unused", "smoke")
    assert all(p.cfg.train.steps <= 5 for p in smoke)
    # offline: the embedded names, char ids or a BPE trained here on their train split (proxies' weight-decay-0 arm)
    assert all(p.cfg.data.source == "names" and p.cfg.data.tokenizer in ("char", "bpe") for p in smoke), "offline"
    figures = spec.module("figures")
    assert figures.LEAD_FIGURE.endswith(".png")


def test_proxies_arms_stack_by_shape_and_set_decay_and_kappa():
    spec = load_experiment("proxies")
    planned = expand(spec, [], None, "/tmp/unused")
    assert len(spec.variants) == 2 * 3 + 2 + 3 and len(planned) == 5 * len(spec.variants)
    # qk-norm off / on, the BPE weight-decay-0 arm and each kappa are shapes of their own: 2 + 1 + 3 stacks
    assert len({stack_key(p.cfg) for p in planned}) == 6
    by = {(p.variant, p.seed): p.cfg for p in planned}
    assert {c.model.d_model for c in by.values()} == {128}
    for lr in ("1e-2", "1e-1", "3e-1"):
        ind = by[(f"qkoff_lr{lr}", 0)].train
        assert ind.weight_decay == pytest.approx(1e-4 / float(lr), rel=1e-3)   # independent 1e-4 in coupled form
        assert ind.z_loss == 1e-4 and by[(f"qkon_lr{lr}", 0)].model.attn.qk_norm
    wd0 = [c for (v, _), c in by.items() if v.startswith("wd0_")]
    assert {c.train.weight_decay for c in wd0} == {0.0} and {c.train.z_loss for c in wd0} == {0.0, 1e-4}
    assert all(c.model.attn.qk_norm and c.data.tokenizer == "bpe" for c in wd0)
    kappas = {c.model.attn.qk_scale for (v, _), c in by.items() if v.startswith("kappa")}
    assert kappas == {1.0, 1e2, 1e3}
    assert all(c.train.steps == 150 and c.train.warmup_steps == 8 for c in by.values())   # 3x the measured horizon
    gpu = {p.variant: p.cfg for p in expand(spec, [], [0], "/tmp/unused", "gpu")}
    cfg = gpu["qkoff_lr1e-2"].model
    assert cfg.d_model == 512 and gpu["kappa1e3"].model.attn.qk_scale == 1e3
    assert gpu["wd0_zoff_lr3e-1"].data.bpe_vocab_size == 8192 and gpu["wd0_zoff_lr3e-1"].data.source == "tinystories"
    cfg.vocab_size = 8192
    assert 20e6 < nl.build_model(cfg).num_params() < 40e6


def test_depth_dyt_and_sinks_grids():
    depth = load_experiment("depth")
    assert {(c.model.norm.placement, c.model.n_layer) for c in (p.cfg for p in expand(depth, [], [0], "/tmp/u"))} == \
        {(pl, n) for pl in ("pre", "lns", "peri", "mixln") for n in (4, 8, 16, 32)}
    dyt = load_experiment("dyt-regime")
    cfgs = [p.cfg for p in expand(dyt, [], [0], "/tmp/u")]
    assert {c.model.norm.kind for c in cfgs} == {"rmsnorm", "dyt", "derf"}
    assert {c.data.train_max_bytes for c in cfgs} == {512, 2048, 8192, 0}
    sinks = load_experiment("sinks")
    got = {p.variant: (p.cfg.model.norm.kind, p.cfg.model.attn.gate) for p in expand(sinks, [], [0], "/tmp/u")}
    assert got["ga_gatednorm"] == ("gated_rmsnorm", "elementwise")
    assert got["dyt_ga_gateddyt"] == ("gated_dyt", "elementwise")
    assert got["baseline"] == ("rmsnorm", "none") and len(got) == 9


def _write_spec(tmp_path, presets: str):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "experiment.yaml").write_text(
        "name: exp\nbase: {model: {d_model: 16}}\ngrid:\n  - small: {model.d_model: 16}\n    big: {model.d_model: 32}\n"
        "  - lr1: {train.lr: 0.001}\n    lr2: {train.lr: 0.01}\n"
        "variants:\n  extra-big: {model.d_model: 32}\n  wide_big: {model.d_model: 48}\n"
        f"presets:\n{presets}\nclaims: []\n")
    return str(folder)


def test_presets_restrict_variants_and_override_per_axis_value(tmp_path):
    spec = load_experiment(_write_spec(tmp_path, "  p: {variants: ['big_*', extra-big, wide_big], "
                                                 "axes: {big: {model.d_model: 64}}, train.steps: 7}"))
    planned = {p.variant: p.cfg for p in expand(spec, ["train.lr=0.5"], [0], str(tmp_path / "runs"), "p")}
    assert set(planned) == {"big_lr1", "big_lr2", "extra-big", "wide_big"}
    assert planned["big_lr1"].model.d_model == 64 and planned["extra-big"].model.d_model == 32
    assert planned["wide_big"].model.d_model == 64      # a part of an explicit variant's name counts too
    assert planned["big_lr1"].train.steps == 7 and planned["big_lr2"].train.lr == 0.5   # the CLI still wins
    assert len(expand(spec, [], [0], str(tmp_path / "runs"))) == 6                        # no preset: every variant
    for bad, match in (("  p: {variants: ['nothing*']}", "matches at least one variant"),
                       ("  p: {axes: {huge: {model.d_model: 8}}}", "`axes` maps parts of variant names"),
                       ("  p: {variants: big_lr1}", "must be a list")):
        (tmp_path / "exp").rename(tmp_path / "old")
        import shutil

        shutil.rmtree(tmp_path / "old")
        with pytest.raises(ConfigError, match=match):
            load_experiment(_write_spec(tmp_path, bad))


# ---- probes ------------------------------------------------------------------------------------

def test_depth_stats_sees_an_identity_block_and_matches_hand_math():
    model = debug_model("model.n_layer=3", vocab=20, seed=0)
    with torch.no_grad():  # block 1 adds nothing: its residual branches end in zero matrices
        for name, p in model.blocks[1].named_parameters():
            if name.endswith("proj.weight"):
                p.zero_()
    x = torch.randint(0, 20, (3, 8))
    y = torch.randint(0, 20, (3, 8))
    y[0, :4] = IGNORE
    out = probe_model(model, x, ["depth_stats"], y=y)["depth_stats"]
    assert out["angle/layer1"] == pytest.approx(0.0, abs=1e-6) and out["skip/layer1"] == pytest.approx(0.0, abs=1e-9)
    assert out["var/layer1"] == pytest.approx(out["var/layer0"], rel=1e-9)
    assert out["angle/layer0"] > 1e-4 and out["angle/layer2"] > 1e-4
    # by hand: block 0's input is the embedding sum; its angle and the loss with block 2 skipped
    model.eval()
    with torch.no_grad():
        h0 = model.wte(x) + model.wpe(torch.arange(8))
        h1 = model.blocks[0](h0)
        keep = (y != IGNORE).reshape(-1)
        a, b = h0.reshape(-1, h0.shape[-1])[keep].double(), h1.reshape(-1, h1.shape[-1])[keep].double()
        angle = (torch.arccos((torch.nn.functional.cosine_similarity(a, b, dim=-1)).clamp(-1, 1)) / math.pi).mean()
        assert out["angle/layer0"] == pytest.approx(float(angle), rel=1e-6)
        full = torch.nn.functional.cross_entropy(model(x).double().flatten(0, 1), y.flatten(), ignore_index=IGNORE)
        h = model.blocks[1](model.blocks[0](h0))
        skipped = model.lm_head(model.norm_final(h))
        cost = torch.nn.functional.cross_entropy(skipped.double().flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    assert out["loss"] == pytest.approx(float(full), rel=1e-6)
    assert out["skip/layer2"] == pytest.approx(float(cost - full), abs=1e-7)
    assert list(out["labels"]) == ["layer0", "layer1", "layer2"] and out["skip"].shape == (3,)
    assert probe_model(model, x, ["depth_stats"])["depth_stats"].get("skip") is None   # no targets: no skip costs


def test_depth_stats_runs_only_when_named():
    """Its L + 1 forwards per probe pass are not in the default probes.names=[all]; naming it adds it."""
    from normlab.probes.base import resolve_names
    assert "depth_stats" not in resolve_names(["all"]) and "attn_entropy" in resolve_names(["all"])
    assert resolve_names(["all", "depth_stats"])[-1] == "depth_stats"
    assert "depth_stats" in {p.name for p in __import__("normlab").Recorder(debug_model(vocab=20, seed=0), ["depth_stats"]).probes}
    assert "depth_stats" in load_experiment("depth").base["probes"]["names"]


def test_output_lse_over_target_positions():
    model = debug_model(vocab=20, seed=0)
    x, y = torch.randint(0, 20, (2, 8)), torch.randint(0, 20, (2, 8))
    y[1] = IGNORE
    out = probe_model(model, x, ["output_lse"], y=y)["output_lse"]
    with torch.no_grad():
        model.eval()
        lse = torch.logsumexp(model(x).double(), -1)[0]
    assert out["mean"] == pytest.approx(float(lse.mean())) and out["max"] == pytest.approx(float(lse.max()))
    assert out["abs_mean"] == pytest.approx(float(lse.abs().mean())) and out["std"] == pytest.approx(float(lse.std()))


# ---- metrics on fixture runs --------------------------------------------------------------------

def _run(tmp_path, variant, seed, val, config, probes=None, status="complete", summary=None):
    write_run(tmp_path, variant, seed, [3.0] * 5, status=status, val=val, config=config, probes=probes,
              summary=summary)
    return load_run(tmp_path / f"{variant}-seed{seed}")


def test_proxies_sensitivity_and_log_z_drift(tmp_path):
    m = load_experiment("proxies").module("metrics")
    runs = []
    for lr, loss in zip((1e-3, 1e-2, 1e-1), [2.0, 2.2, 3.5]):  # 3.5 is capped at ln 27
        cfg = {"model": {"vocab_size": 27, "d_model": 128}, "train": {"lr": lr, "steps": 100}}
        runs.append(_run(tmp_path, f"a_lr{lr:g}", 0, loss, cfg, probes={
            0: {"output_lse/mean": 3.3}, 25: {"output_lse/mean": 30.0}, 75: {"output_lse/mean": -9.0},
            100: {"output_lse/mean": float("nan")}}))
    assert m.lr_curve_sensitivity(runs) == pytest.approx(np.mean([0, 0.2, math.log(27) - 2.0]))
    assert m.late_peak_abs(runs[0]) == pytest.approx(9.0)       # the step-25 transient is not the late drift
    ok, why = m.log_z_drifts({r.variant: [r] for r in runs}, variants="a_*", factor=2.0)
    assert ok and "2.73 x ln V" in why and "last 30%" in why
    assert not m.log_z_drifts({r.variant: [r] for r in runs}, variants="a_*", factor=3.0)[0]
    assert not m.log_z_drifts({r.variant: [r] for r in runs}, variants="a_*", factor=2.0, late=0.2)[0]


def test_proxies_reads_layer_0_and_log_z_at_the_last_step(tmp_path):
    m = load_experiment("proxies").module("metrics")
    cfg = {"model": {"vocab_size": 27, "d_model": 128}, "train": {"lr": 0.3}}
    run = _run(tmp_path, "a", 0, 3.0, cfg, probes={
        0: {"logit_stats/attn_max/layer0": 4.0, "logit_stats/attn_max/layer1": 9e5, "output_lse/mean": 3.3},
        250: {"logit_stats/attn_max/layer0": 1e4, "output_lse/mean": -40.0},
        500: {"logit_stats/attn_max/layer0": 1e3, "output_lse/mean": float("nan")}})
    assert m.log10_attn_logit_end(run) == pytest.approx(3.0)          # layer 0, last step: not the peak, not layer 1
    assert m.abs_log_z_end(run) == pytest.approx(40.0)                # the last finite drift is kept, not dropped
    inf = _run(tmp_path, "b", 0, 3.0, cfg, probes={10: {"logit_stats/attn_max/layer0": float("inf")}})
    assert m.log10_attn_logit_end(inf) == pytest.approx(math.log10(np.finfo(np.float32).max))
    assert m.abs_log_z_end(inf) is None


def test_dyt_regime_relative_loss_and_its_slope(tmp_path):
    m = load_experiment("dyt-regime").module("metrics")
    runs = []
    for n, (rms, dyt) in ((500, (2.0, 1.5)), (2000, (1.8, 1.8)), (8000, (1.6, 2.0))):
        for kind, loss in (("rmsnorm", rms), ("dyt", dyt)):
            cfg = {"model": {"vocab_size": 27, "norm": {"kind": kind}}}
            runs.append(_run(tmp_path, f"{kind}_t{n}", 0, loss, cfg, summary={"data": {"train": {"n_bytes": n}}}))
    assert m.rel_loss_vs_rmsnorm(runs[:2], kind="dyt") == pytest.approx(-0.25)
    assert m.rel_loss_vs_rmsnorm(runs, kind="dyt") is None     # one training set per side
    assert m.rel_loss_slope(runs, kind="dyt") == pytest.approx((0.25 + 0.25) / 4)   # per doubling: x = 8.97..12.97
    overfit = _run(tmp_path, "rmsnorm_x", 1, 4.5, {"model": {"vocab_size": 27, "norm": {"kind": "rmsnorm"}}},
                   summary={"data": {"train": {"n_bytes": 500}}})
    assert m.final_loss(overfit) == 4.5 > math.log(27)          # not capped: overfitting past a uniform guess counts
    diverged = _run(tmp_path, "dyt_x", 1, None, {"model": {"vocab_size": 27, "norm": {"kind": "dyt"}}},
                    status="diverged", summary={"data": {"train": {"n_bytes": 500}}})
    assert m.final_loss(diverged) is None and m.rel_loss_vs_rmsnorm([overfit, diverged], kind="dyt") is None


def test_sinks_and_depth_metrics_read_probe_arrays(tmp_path):
    sinks, depth = load_experiment("sinks").module("metrics"), load_experiment("depth").module("metrics")
    run = _run(tmp_path, "baseline", 0, 3.0, {"model": {"vocab_size": 27}})
    (run.run_dir / "probes").mkdir()
    np.savez(run.run_dir / "probes" / "step_000010.npz",
             **{"attn_sinks/per_head": np.array([[0.9, 0.1], [0.35, 0.2]]),
                "depth_stats/angle": np.array([0.3, 0.2, 0.1, 0.05]), "depth_stats/var": np.array([1.0, 2.0, 5.0, 10.0]),
                "depth_stats/skip": np.array([0.5, 0.2, 0.1, 0.01])})
    run = load_run(run.run_dir)
    assert sinks.sink_rate(run) == 0.5 and sinks.first_position_share(run) == pytest.approx(0.3875)
    assert depth.late_angle(run) == pytest.approx(0.05) and depth.late_minus_early_angle(run) == pytest.approx(-0.25)
    assert depth.log10_variance_growth(run) == pytest.approx(1.0) and depth.late_skip_cost(run) == pytest.approx(0.01)


def test_outlier_claims_need_massive_activations(tmp_path):
    """A claim that a method lowers the outliers is untestable when the baseline has none (peak <= 100)."""
    sinks = load_experiment("sinks").module("metrics")
    small = [_run(tmp_path / "a", "baseline", k, 3.0, None, probes={10: {"massive_activations/top1/layer0": 3.0 + k,
                                                                         "massive_activations/top1/layer1": 4.0}})
             for k in range(3)]
    ok, why = sinks.massive_activations_present({"baseline": small}, ["baseline"])
    assert not ok and "peak |activation| 5" in why and "needs > 100" in why
    big = small + [_run(tmp_path / "b", "baseline", 9, 3.0, None, probes={10: {"massive_activations/top1/layer1": 640.0}})]
    assert sinks.massive_activations_present({"baseline": big}, ["baseline"])[0]
    assert not sinks.massive_activations_present({"baseline": big, "ga": []}, ["baseline", "ga"])[0]
    claims = {c.id: c for c in load_experiment("sinks").claim_specs}
    for cid in ("fewer-outliers", "table1-outlier-order", "dyt-no-outliers"):
        assert claims[cid].precondition["name"] == "massive_activations_present"


def test_probe_peak_log10_counts_an_overflow_as_float32_max(tmp_path):
    """One log-peak metric serves nonorm's logits, sinks' activations and proxies' attention logits."""
    from normlab.report.metrics import FLOAT32_MAX, probe_peak_log10
    proxies = load_experiment("proxies").module("metrics")
    run = _run(tmp_path, "a", 0, 3.0, None, probes={10: {"logit_stats/attn_max/layer0": 20.0,
                                                        "logit_stats/attn_max/layer1": 2000.0}})
    assert probe_peak_log10(run, "logit_stats/attn_max/*") == pytest.approx(math.log10(2000.0))
    assert proxies.log10_peak_attn_logit(run) == pytest.approx(math.log10(2000.0))
    bad = _run(tmp_path, "b", 0, 3.0, None, probes={10: {"logit_stats/attn_max/layer0": float("inf")}})
    assert probe_peak_log10(bad, "logit_stats/attn_max/*") == pytest.approx(math.log10(FLOAT32_MAX))
    assert probe_peak_log10(bad, "massive_activations/top1/*") is None


def test_train_max_bytes_caps_the_train_split_only():
    from normlab.data import build_corpus

    full, small = (build_corpus(nl.load_config("debug", [f"data.train_max_bytes={n}"]).data, 16) for n in (0, 600))
    assert small.val.stats == full.val.stats and small.tokenizer.vocab_size == full.tokenizer.vocab_size
    assert 600 <= small.train.stats["n_bytes"] < 700 < full.train.stats["n_bytes"]


# ---- smoke runs end to end -----------------------------------------------------------------------

def _smoke(tmp_path, name):
    from normlab.experiments import run_experiment

    result = run_experiment(name, preset="smoke", out=str(tmp_path), echo=lambda line: None)
    assert all(s.get("status") in ("complete", "diverged") for s in result.results.values()), result.results
    md = (result.exp_dir / "report.md").read_text()
    lead = load_experiment(name).module("figures").LEAD_FIGURE
    claims_at, lead_at = md.index("## Claims"), md.index(f"![{lead}]({lead})")
    assert claims_at < lead_at < md.index("## Results") and md.count(f"![{lead}]") == 1
    assert (result.exp_dir / lead).stat().st_size > 1000
    return result


def test_dyt_regime_smoke_end_to_end(tmp_path):
    result = _smoke(tmp_path, "dyt-regime")
    runs = {r: s for r, s in result.results.items()}
    assert len(runs) == 30
    small = load_run(result.exp_dir / "dyt_t512-seed0")
    assert small.summary["data"]["train"]["n_bytes"] < 700 and "squash_saturation/all" in small.probes.scalars


@pytest.mark.slow
@pytest.mark.parametrize("name", ["proxies", "depth", "sinks"])
def test_smoke_end_to_end(tmp_path, name):
    _smoke(tmp_path, name)


def test_a_variant_scoped_override_sets_that_variant_only():
    """`VARIANT:key=value` (calibration's peers read two corpora: nanoGPT's text, makemore's names)."""
    from normlab.experiments.spec import experiment_dir_name, replaced_variant_keys

    spec = load_experiment("calibration")
    runs = expand(spec, ["nanogpt:train.lr=0.002", "train.steps=700"], [0, 1])
    lr = {r.variant: r.cfg.train.lr for r in runs}
    assert lr["nanogpt"] == 0.002 and lr["makemore"] == load_experiment("calibration").variants["makemore"][
        "train.lr"] and all(r.cfg.train.steps == 700 for r in runs)   # a shared override still reaches both
    assert experiment_dir_name(spec, [0, 1], None, ["nanogpt:train.lr=0.002"]) != experiment_dir_name(
        spec, [0, 1], None, [])                                     # another setup, another folder
    # the value after the scope may hold colons of its own (text:PATH)
    assert {r.variant: r.cfg.data.source for r in expand(spec, ["nanogpt:data.source=names"], [0])} == {
        "nanogpt": "names", "makemore": "names"}
    with pytest.raises(ConfigError, match="'makemre' is not a variant of calibration"):
        expand(spec, ["makemre:train.lr=0.1"], [0])
    # an unscoped override of a key a variant sets itself is reported (normlab run prints a note)
    assert replaced_variant_keys(spec, ["data.source=text:x.txt", "probes.every=0", "train.steps=9"]) == {
        "data.source=text:x.txt": ["makemore"], "train.steps=9": ["makemore"]}   # makemore trains 5,000 steps
    assert replaced_variant_keys(spec, ["data.source=names"]) == {}   # makemore's own value: nothing replaced
    assert replaced_variant_keys(load_experiment("prepost"), ["model.norm.placement=pre"]) == {
        "model.norm.placement=pre": ["post", "none"]}
