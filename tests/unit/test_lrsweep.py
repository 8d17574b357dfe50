"""The lr-sweep experiment covers every scheme at every learning rate, and its report computes the
basin and Wortsman et al.'s LR sensitivity as written out by hand."""
import json
import math

import pytest

from normlab.experiments import expand, load_experiment
from normlab.report import build_report


def test_lr_sweep_is_a_full_grid_with_lrs_in_the_names():
    runs = expand(load_experiment("lr-sweep"), seeds=[0])
    schemes, lrs = {}, set()
    for r in runs:
        scheme, _, lr = r.variant.rpartition("_lr")
        assert float(lr) == r.cfg.train.lr                     # the name says the config's lr
        schemes.setdefault(scheme, set()).add(r.cfg.train.lr)
        lrs.add(r.cfg.train.lr)
    assert len(lrs) >= 5 and all(v == lrs for v in schemes.values())
    assert {"rmsnorm-pre", "rmsnorm-post", "none", "dyt-pre", "rmsnorm-pre-qknorm"} <= set(schemes)
    qk = next(r for r in runs if r.variant.startswith("rmsnorm-pre-qknorm"))
    assert qk.cfg.model.attn.qk_norm and not next(r for r in runs if r.variant.startswith("rmsnorm-pre_")).cfg.model.attn.qk_norm


def _fake_run(folder, variant, seed, lr, val, status="complete"):
    run = folder / f"{variant}-seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"model:\n  vocab_size: 27\ntrain:\n  lr: {lr}\n")
    summary = {"status": status, "steps": 3, "val_loss": val, "params": 10,
               "diverged_step": 2 if status == "diverged" else None,
               "val_bpb": None if val is None else val / math.log(2),     # 1 byte per token
               "data": {"val": {"byte_entropy_bits": 2.5 / math.log(2)}}}  # unigram loss 2.5 nats
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 3.0 - s}) + "\n" for s in range(3)))


def test_lr_sweep_report_basin_and_sensitivity_by_hand(tmp_path):
    exp = tmp_path / "lr-sweep"
    cells = {  # variant -> (lr, [seed0, seed1]); None = diverged
        "rmsnorm-pre_lr1e-3": (1e-3, [2.5, 2.5]), "rmsnorm-pre_lr1e-2": (1e-2, [2.3, 2.3]),
        "rmsnorm-post_lr1e-3": (1e-3, [2.0, 2.2]), "rmsnorm-post_lr1e-2": (1e-2, [None, None]),
    }
    for variant, (lr, vals) in cells.items():
        for seed, val in enumerate(vals):
            _fake_run(exp, variant, seed, lr, val, "diverged" if val is None else "complete")
    (exp / "experiment.json").write_text(json.dumps({
        "name": "lr-sweep", "title": "lr", "variants": list(cells), "seeds": [0, 1],
        "runs": [{"variant": v, "seed": s, "dir": f"{v}-seed{s}"} for v in cells for s in (0, 1)]}))
    build_report(exp)
    results = json.loads((exp / "results.json").read_text())
    by = {e["scheme"]: e for e in results["schemes"]}
    l0 = math.log(27)
    pre, post = by["rmsnorm-pre"], by["rmsnorm-post"]
    assert pre["best_lr"] == 1e-2 and pre["best_loss"] == pytest.approx(2.3) and pre["basin_size"] == 1
    assert pre["sensitivity_values"] == pytest.approx([0.1, 0.1])              # mean(2.5, 2.3) - 2.3
    assert post["best_lr"] == 1e-3 and post["lowest_diverging_lr"] == 1e-2
    assert post["sensitivity_values"] == pytest.approx([(2.0 + l0) / 2 - 2.0, (2.2 + l0) / 2 - 2.2])
    claim = next(c for c in results["claims"] if c["text"].startswith("Pre-LN is less sensitive"))
    assert claim["verdict"] == "reproduced"                    # 0.1 vs ~0.6, seed std 0.07
    md = (exp / "report.md").read_text()
    assert "## Stability basin per scheme" in md and "(diverged 2/2)" in md
    assert "| rmsnorm-pre | 2.500 (unigram 2/2) | **2.300** |" in md   # 2.5 nats = the unigram entropy
    assert "| rmsnorm-post | 2 | 2.100" not in md and "+0.000 |" in md
    assert (exp / "lr_sweep.png").stat().st_size > 0
