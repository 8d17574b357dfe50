"""The zoo experiment lists exactly the validity matrix's distinct valid pairs, and its report ranks them."""
import json
import math

import pytest

from normlab.experiments import expand, load_experiment
from normlab.model import kind_is_used, valid_pairs
from normlab.report import build_report
from normlab.report.stats import t_interval, t_quantile


def test_zoo_variants_are_the_valid_pairs():
    expected = {(k if kind_is_used(p) else None, p) for k, p in valid_pairs()}
    runs = expand(load_experiment("zoo"), seeds=[0])
    got = {(r.cfg.model.norm.kind if kind_is_used(r.cfg.model.norm.placement) else None,
            r.cfg.model.norm.placement) for r in runs}
    assert got == expected and len(runs) == len(expected)
    for r in runs:
        name = r.variant
        assert name == (f"{r.cfg.model.norm.kind}-{r.cfg.model.norm.placement}"
                        if kind_is_used(r.cfg.model.norm.placement) else r.cfg.model.norm.placement)


@pytest.mark.parametrize("df,q", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (29, 2.045),
                                  (1000, 1.962)])
def test_t_quantile_matches_the_table(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, abs=2e-3)


def test_t_interval_by_hand():
    lo, hi = t_interval([1.0, 2.0, 4.0])
    mean, sd = 7 / 3, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert (lo + hi) / 2 == pytest.approx(mean)
    assert (hi - lo) / 2 == pytest.approx(4.303 * sd / math.sqrt(3), rel=1e-3)
    assert all(math.isnan(v) for v in t_interval([1.0]))


def _fake_run(folder, variant, seed, kind, placement, val, status="complete"):
    run = folder / f"{variant}-seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"model:\n  norm: {{kind: {kind}, placement: {placement}, final: auto}}\n")
    (run / "summary.json").write_text(json.dumps({"status": status, "steps": 3, "val_loss": val, "params": 10,
                                                  "train_time_s": 1.0}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 3.0 - s}) + "\n" for s in range(3)))


def test_zoo_report_ranks_with_intervals_and_lists_refused_pairs(tmp_path):
    exp = tmp_path / "zoo"
    cells = {"rmsnorm-pre": ("rmsnorm", "pre", [2.0, 2.2]), "rmsnorm-post": ("rmsnorm", "post", [2.5, 2.7]),
             "dyt-pre": ("dyt", "pre", [2.0, 2.05])}
    for variant, (kind, placement, vals) in cells.items():
        for seed, val in enumerate(vals):
            _fake_run(exp, variant, seed, kind, placement, val)
    _fake_run(exp, "none", 0, "rmsnorm", "none", None, status="diverged")
    (exp / "experiment.json").write_text(json.dumps({
        "name": "zoo", "title": "zoo", "variants": [*cells, "none"], "seeds": [0, 1],
        "runs": [{"variant": v, "seed": s, "dir": f"{v}-seed{s}"} for v in cells for s in (0, 1)] +
                [{"variant": "none", "seed": 0, "dir": "none-seed0"}]}))
    build_report(exp)
    results = json.loads((exp / "results.json").read_text())
    order = [e["variant"] for e in results["ranking"]]
    assert order == ["dyt-pre", "rmsnorm-pre", "rmsnorm-post", "none"]
    first = results["ranking"][0]
    assert first["ci"][0] == pytest.approx(2.025 - 12.706 * 0.025, abs=1e-3)   # sem = 0.025
    assert {(r["kind"], r["placement"]) for r in results["refused_pairs"]} >= {("dyt", "post"), ("identity", "pre")}
    md = (exp / "report.md").read_text()
    assert "## Ranking by final validation loss" in md and "## Refused pairs (validity matrix)" in md
    assert "| 1 | dyt-pre | dyt | pre | 2.025 |" in md
    assert "| 4 | none | - | none | n/a |" in md                 # diverged: ranked last, kind unused
    claims = {c["text"].split(" (")[0]: c["verdict"] for c in results["claims"]}
    assert claims == {"Pre-Norm ends lower than Post-Norm": "reproduced"}   # gap 0.5 > seed std 0.14; others absent
    assert (exp / "ranking.png").stat().st_size > 0
