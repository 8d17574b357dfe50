"""The `ngpt` experiment end to end on tiny settings, and the report's helpers."""
import json

import numpy as np
import torch
from click.testing import CliRunner

from normlab.cli import main
from normlab.report.ngpt import row_norms, steps_to_reach


def test_steps_to_reach_reads_the_first_eval_at_or_below_target():
    val = [(30, 2.5), (60, 2.2), (90, 2.25), (120, 2.1)]
    assert steps_to_reach(val, 2.2) == 60 and steps_to_reach(val, 2.1) == 120 and steps_to_reach(val, 2.0) is None


def test_row_norms():
    out = row_norms({"wte.weight": torch.tensor([[3.0, 4.0], [0.0, 1.0]]), "other": torch.zeros(2)})
    assert set(out) == {"input"} and np.allclose(out["input"], [5.0, 1.0])


def test_run_ngpt_tiny_end_to_end(tmp_path):
    args = ["run", "ngpt", "train.steps=40", "train.eval_every=20",   # > the baseline's 30 warmup steps
            "model.d_model=16", "model.n_layer=1",
            "--seeds", "1", "--jobs", "2", "--out", str(tmp_path)]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    exp = tmp_path / "ngpt"
    # LM and seq2seq losses are drawn apart (different tasks share no loss axis)
    for f in ("report.md", "report.html", "val_to_target.png", "embedding_norms.png", "eigen_lrs.png",
              "loss_curves.png", "loss_curves_reverse.png"):
        assert (exp / f).exists(), f
    results = json.loads((exp / "results.json").read_text())
    assert {run["status"] for run in results["runs"]} == {"complete"}
    table = results["table"]
    assert abs(table["Input embedding row norm (mean)"]["ngpt"]["mean"] - 1) < 1e-5   # renormalized rows
    assert set(table["Held-out exact match (%)"]) == {"encdec", "encdec_ngpt"}
    assert "Eigen LR α_A (effective), layer 0" in table and "Eigen LR decoder α_C (effective), layer 0" in table
    assert len(results["claims"]) == 3
    assert {c["verdict"] for c in results["claims"]} <= {"reproduced", "not reproduced", "inconclusive"}
