"""The report built from fixture run directories written here (no training): files, numbers, claims,
the setup table, partial sweeps, escaping and the generic report of an unknown experiment."""
import json

import numpy as np
import pytest

from normlab.experiments import load_experiment
from normlab.report import build_report

from runfixtures import decaying, write_experiment, write_run

LEVEL = {"pre": 2.0, "post": 2.6, "none": 2.1}
SEEDS = range(5)


@pytest.fixture
def exp_dir(tmp_path):
    root = tmp_path / "prepost"
    rng = np.random.default_rng(0)
    runs = []
    for variant, level in LEVEL.items():
        for seed in SEEDS:
            samples = ["a"] * 12 + ["anna"] * 8 if variant == "post" else ["emma", "liam", "noah", "ava", "a"] * 4
            runs.append(write_run(root, variant, seed, decaying(level, seed, rng=rng, noise=0.02),
                                  val=level + 0.1 + 0.01 * seed, samples=samples,
                                  summary={"data": {"train": {"n_docs": 4647, "n_tokens": 34000}}}))
    return write_experiment(root, "prepost", list(LEVEL), runs, list(SEEDS), seed_ref="003", preset=None,
                            overrides=[])


def _results(exp_dir, spec="prepost"):
    paths = build_report(exp_dir, load_experiment(spec) if spec else None)
    return paths, json.loads(paths["results.json"].read_text())


def test_report_files_numbers_and_the_seed_table(exp_dir):
    paths, results = _results(exp_dir)
    for name in ("report.md", "report.html", "results.json", "loss_curves.png", "avg_loss.png", "val_loss.png"):
        assert paths[name].exists() and paths[name].stat().st_size > 0, name
    last100 = results["table"]["Avg loss (last 100 steps)"]
    for variant in LEVEL:
        losses = [float(json.loads(line)["loss"]) for s in SEEDS
                  for line in (exp_dir / f"{variant}-seed{s}" / "metrics.jsonl").read_text().splitlines()[200:300]]
        assert last100[variant]["mean"] == pytest.approx(np.mean(losses))
    assert results["seeds"] == list(SEEDS) and results["setup"]["source"]["documents"] == "32,033"
    md = paths["report.md"].read_text()
    assert "## Setup vs the source" in md and "| Training documents | 4,647 | 32,033 |" in md


def test_claims_carry_the_evidence_fields(exp_dir):
    _, results = _results(exp_dir)
    claims = {c["id"]: c for c in results["claims"]}
    for c in claims.values():
        assert set(c) >= {"id", "text", "seed_value", "seed_source", "verdict", "n", "test", "p", "p_holm", "effect",
                          "precondition"}
    end = claims["pre-below-post-end"]
    assert end["verdict"] == "supported" and end["n"] == 5 and end["test"].startswith("paired t")
    assert end["effect"]["ci95"][1] < 0 and end["p_holm"] >= end["p"]
    collapse = claims["post-collapses"]
    assert collapse["verdict"] == "supported" and collapse["test"].startswith("Fisher")
    assert claims["none-unstable-early"]["verdict"] != "supported"   # every variant starts at the same height


def test_partial_sweep_says_what_is_missing(exp_dir):
    (exp_dir / "post-seed4" / "summary.json").unlink()
    paths, results = _results(exp_dir)
    assert results["missing"] == ["post-seed4 (missing)"]
    md = paths["report.md"].read_text()
    assert "**Partial sweep**: 1 of 15 runs have not finished" in md
    end = next(c for c in results["claims"] if c["id"] == "pre-below-post-end")
    assert end["n"] == 4 and "post-seed4" in " ".join(p for part in end["parts"] for p in part["missing"])


def test_a_sweep_with_no_finished_run_of_a_variant_still_reports(exp_dir):
    for s in SEEDS:
        (exp_dir / f"none-seed{s}" / "summary.json").unlink()
        (exp_dir / f"none-seed{s}" / "metrics.jsonl").write_text("")
    paths, results = _results(exp_dir)
    assert paths["report.html"].exists() and len(results["missing"]) == 5


def test_modified_title_and_html(exp_dir):
    info = json.loads((exp_dir / "experiment.json").read_text())
    info["overrides"] = ["train.steps=100"]
    (exp_dir / "experiment.json").write_text(json.dumps(info))
    paths, _ = _results(exp_dir)
    md = paths["report.md"].read_text()
    assert md.startswith("# prepost (modified: train.steps=100)")
    page = paths["report.html"].read_text()
    assert "data:image/png;base64," in page and 'src="loss_curves.png"' not in page
    assert "<table>" in page and 'class="v-supported"' in page and "✅" not in page


def test_unknown_experiment_gets_the_generic_report_and_pipes_are_escaped(tmp_path):
    root = tmp_path / "x"
    runs = [write_run(root, "a|b", s, decaying(2.0, s), val=2.1) for s in range(2)]
    write_experiment(root, "x", ["a|b"], runs, [0, 1])
    paths = build_report(root)
    md = paths["report.md"].read_text()
    assert "**Outcome: no declared claims (the results table is the outcome).**" in md and "| a\\|b |" in md


def test_report_without_experiment_json_discovers_runs(exp_dir):
    (exp_dir / "experiment.json").unlink()
    md = build_report(exp_dir)["report.md"].read_text()
    assert "| Metric | none | post | pre |" in md


def test_diverged_run_is_marked_not_dropped(exp_dir):
    d = exp_dir / "none-seed1"
    summary = json.loads((d / "summary.json").read_text())
    summary.update(status="diverged", diverged_step=42, val_loss=None)
    (d / "summary.json").write_text(json.dumps(summary))
    md = _results(exp_dir)[0]["report.md"].read_text()
    assert "| none-seed1 | diverged |" in md and "| 42 |" in md


def test_ema_carries_gaps_but_ends_at_the_last_finite_step():
    from normlab.report.plots import ema

    out = ema(np.array([[1.0, 2.0, np.nan, 3.0, np.nan, np.nan], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]), 0.5)
    assert np.isfinite(out[0, :4]).all() and out[0, 2] == out[0, 1]       # a gap carries the last value
    assert np.isnan(out[0, 4:]).all()                                      # a diverged run's curve stops
    assert np.allclose(out[1], 1.0)


def test_replication_table(exp_dir, tmp_path):
    from normlab.report.replication import outcome, write_replication

    _results(exp_dir)
    again = tmp_path / "again"
    import shutil

    shutil.copytree(exp_dir, again)
    info = json.loads((again / "experiment.json").read_text())
    info["seeds"] = [5, 6, 7, 8, 9]
    (again / "experiment.json").write_text(json.dumps(info))
    _results(again)
    rows = write_replication(exp_dir, again)
    by_id = {r["id"]: r for r in rows}
    assert by_id["pre-below-post-end"]["outcome"] == "replicated"
    assert "## Replication" in (again / "replication.md").read_text()
    assert outcome("supported", "contradicted") == "failed to replicate"
    assert outcome("supported", "not enough evidence") == "not decided"
    with pytest.raises(Exception, match="overlap"):
        write_replication(exp_dir, exp_dir)


def test_the_summary_printed_after_a_build_is_the_reports_own_and_follows_a_changed_results_json(exp_dir, monkeypatch):
    from normlab.report import build as build_module

    spec = load_experiment("prepost")
    build_report(exp_dir, spec)
    build_module._summaries.clear()
    fresh = build_module.summary_table(exp_dir, spec)           # analysed afresh from the run directories
    build_report(exp_dir, spec)

    def refuse(*a, **k):
        raise AssertionError("summary_table analysed the runs again right after build_report")
    monkeypatch.setattr(build_module, "analyze", refuse)
    assert build_module.summary_table(exp_dir, spec) == fresh   # the report's own, not a second analysis
    assert "Pre-Norm" in fresh and "supported" in fresh
    results = exp_dir / "results.json"
    results.write_text(results.read_text().replace('"supported"', '"contradicted"', 1))   # someone else wrote it
    with pytest.raises(AssertionError, match="analysed the runs again"):
        build_module.summary_table(exp_dir, spec)
