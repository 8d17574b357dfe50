"""Issue 26's experiments at the scale where their phenomena occur: postln-depth (Post-LN at depth and the
gradient profile at init). Each loads with its claims and presets; its metrics match hand computations on
tiny fixture runs."""
from __future__ import annotations

import math

import pytest

from normlab.experiments import expand, load_experiment
from normlab.report.runs import load_run
from normlab.training.stacked_loop import stack_key

from runfixtures import write_run


def test_postln_depth_loads_with_its_grid_init_arm_and_presets():
    spec = load_experiment("postln-depth")
    assert {"smoke", "gpu"} <= set(spec.presets) and spec.seeds >= 5 and spec.seeds_why
    planned = expand(spec, [], None, "/tmp/unused")
    assert len(spec.variants) == 2 * 2 * 2 + 2 and len(planned) == 5 * len(spec.variants)
    assert len({stack_key(p.cfg) for p in planned}) == 4           # placement x depth: the init arm joins its stack
    by = {(p.variant, p.seed): p.cfg for p in planned}
    assert by[("post_L24_w10", 0)].train.warmup_steps == by[("post_L24_w10", 0)].train.steps // 10
    assert by[("post_L24_w0", 0)].train.warmup_steps == 0 and by[("post_L24_w0", 0)].model.norm.placement == "post"
    init = by[("init-post_L24", 0)]
    assert init.train.steps == 1 and init.model.init_std == pytest.approx(1 / math.sqrt(init.model.d_model), rel=1e-3)
    assert init.probes.grad_every and 0 % init.probes.grad_every == 0   # step 0 is recorded
    smoke = expand(spec, [], None, "/tmp/unused", "smoke")
    assert all(p.cfg.train.steps <= 5 and p.cfg.data.source == "names" for p in smoke)
    for claim in spec.claim_specs:
        assert "arXiv" in claim.source and claim.seed_value, claim.id


def test_init_grad_profile_metrics_read_the_step0_record(tmp_path):
    m = load_experiment("postln-depth").module("metrics")
    layers = [1.0, 1.0, 2.0, 4.0, 4.0, 8.0, 8.0, 16.0]          # 8 blocks: quarters are 2 blocks
    probes = {0: {f"grad_norms/layer{i}": v for i, v in enumerate(layers)},
              50: {f"grad_norms/layer{i}": 1.0 for i in range(8)}}   # a later step is ignored
    run = load_run(tmp_path / write_run(tmp_path, "init-post_L8", 0, [3.0], val=3.0, probes=probes)["dir"])
    assert m.init_grad_tilt(run) == pytest.approx(math.log10(12.0 / 1.0))
    assert m.init_last_grad_log10(run) == pytest.approx(math.log10(16.0))
    flat = load_run(tmp_path / write_run(tmp_path, "x", 0, [3.0], val=3.0,
                                         probes={0: {f"grad_norms/layer{i}": 2.0 for i in range(4)}})["dir"])
    assert m.init_grad_tilt(flat) == pytest.approx(0.0)
    none = load_run(tmp_path / write_run(tmp_path, "y", 0, [3.0], val=3.0)["dir"])
    assert m.init_grad_tilt(none) is None and m.init_last_grad_log10(none) is None


def test_calibration_copies_the_peer_configs_and_states_equivalence_margins():
    from normlab.model import build_model

    spec = load_experiment("calibration")
    assert {"smoke", "gpu", "nanogpt", "makemore"} <= set(spec.presets)
    by = {p.variant: p.cfg for p in expand(spec, [], [0], "/tmp/unused")}
    nano, mm = by["nanogpt"], by["makemore"]
    assert (nano.model.n_layer, nano.model.n_head, nano.model.d_model, nano.model.block_size) == (4, 4, 128, 64)
    assert (nano.train.steps, nano.train.batch_size, nano.train.betas, nano.train.lr) == (2000, 12, [0.9, 0.99], 1e-3)
    assert nano.train.lr * nano.train.min_lr_frac == pytest.approx(1e-4) and nano.model.tie_embeddings
    assert (mm.model.n_layer, mm.model.n_head, mm.model.d_model, mm.train.batch_size, mm.train.lr) == (4, 4, 64, 32, 5e-4)
    mm.model.vocab_size = 27                      # makemore's names.txt: 26 letters + the boundary token
    params = sum(p.numel() for p in build_model(mm.model).parameters())
    assert 190_000 < params < 215_000             # makemore's "super tiny 200K param transformer"
    claims = {c.id: c for c in spec.claim_specs}
    assert claims["nanogpt-shakespeare-char"].margin == 0.06 and claims["makemore-names"].margin == 0.05
    assert all(c.parts[0][1] == "~" for c in claims.values())
    smoke = expand(spec, [], None, "/tmp/unused", "smoke")
    assert all(p.cfg.train.steps <= 5 and p.cfg.data.source == "names" for p in smoke), "smoke runs offline"
    only = expand(spec, [], [0], "/tmp/unused", "nanogpt")
    assert [p.variant for p in only] == ["nanogpt"]
    # what differs from the peers is said where the report's setup table shows it (its rows' keys)
    from normlab.report.setup_table import ROWS

    assert set(spec.seed_setup) <= {key for key, _ in ROWS} and {"data", "tokenizer", "optimizer"} <= set(spec.seed_setup)


def test_participation_ratio_counts_the_directions_that_carry_variance():
    import torch

    from normlab.probes.ffn_spectrum import participation_ratio

    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    assert participation_ratio(z @ torch.randn(1, 16, generator=g, dtype=torch.float64)) == pytest.approx(1.0)
    iso = torch.randn(20000, 8, generator=g, dtype=torch.float64)
    assert participation_ratio(iso) == pytest.approx(8.0, rel=0.02)
    # eigenvalues 4, 1, 1 -> (6)^2 / (16 + 1 + 1) = 2
    scaled = torch.randn(40000, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    assert participation_ratio(scaled) == pytest.approx(2.0, rel=0.03)
    assert math.isnan(participation_ratio(torch.ones(10, 4)))


def test_ffn_spectrum_probe_reads_each_mlp_hidden_layer():
    import torch

    from normlab.config import RunConfig, from_dict
    from normlab.model import build_model
    from normlab.probes import probe_model

    cfg = from_dict(RunConfig, {"model": {"d_model": 16, "n_head": 2, "n_layer": 2, "block_size": 8, "vocab_size": 11,
                                          "mlp": "relu", "norm": {"kind": "layernorm", "placement": "none"}}})
    torch.manual_seed(0)
    out = probe_model(build_model(cfg.model), torch.randint(0, 11, (4, 8)), ["ffn_spectrum"])["ffn_spectrum"]
    assert set(out) == {"pr/layer0", "pr/layer1", "pr_frac/layer0", "pr_frac/layer1"}
    assert 1.0 <= out["pr/layer0"] <= 64 and out["pr_frac/layer0"] == pytest.approx(out["pr/layer0"] / 64)


def test_nonorm_seeds_cover_its_binary_claims_and_the_report_names_each_blow_up_site(tmp_path):
    from math import comb

    from normlab.experiments.nonorm.figures import blowup_table
    from normlab.report.runs import RunData

    spec = load_experiment("nonorm")
    # "all blow up vs none" must clear the Holm bar of the best of its claims (0.05 / m) by Fisher's exact test
    assert 1 / comb(2 * spec.seeds, spec.seeds) < 0.05 / len(spec.claim_specs) and spec.seeds >= 8
    cfg = expand(spec, [], [0], "/tmp/unused")[0].cfg
    assert 0 < cfg.probes.snapshot_every <= 10   # forensics replays a few steps, not the whole run
    jump = {"module": "blocks.3.mlp.proj", "layer": "layer3", "sublayer": "mlp", "growth": 87.1, "max_abs": 784.0,
            "max_abs_before": 9.0, "kind": "|a| grew 87.1x in one step"}
    diverged = {"status": "diverged", "diverged_step": 58, "diverged_reason": "loss 97.8 > train.loss_bound=20.0",
                "first_jump": jump, "first_bad": None, "first_nonfinite_grad": None}
    runs = {"nonorm": [RunData("nonorm", 1, tmp_path, diverged, None), RunData("nonorm", 0, tmp_path,
                                                                                {"status": "complete"}, None)]}
    table = blowup_table(runs).splitlines()
    assert len(table) == 3 and table[2].startswith("| nonorm | 1 | 58 | loss 97.8")
    assert "`blocks.3.mlp.proj` (87.1x: 9 -> 784)" in table[2] and table[2].endswith("| none | none |")
    assert blowup_table({"norm": [RunData("norm", 0, tmp_path, {"status": "complete"}, None)]}) == "No run diverged."
