"""ngpt: steps to the baseline's loss, held-out accuracy of the encoder-decoder, validation curves."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from normlab.report.metrics import probe_last
from normlab.report.tables import common_rows, metric_row, stat


def _m():
    from normlab.experiments.spec import load_module

    return load_module(Path(__file__).with_name("metrics.py"), "normlab.experiments._ngpt.metrics")


def rows(groups):
    out = common_rows(groups)
    base = {r.seed: r for r in groups.get("gpt", [])}
    if base:
        def target(r):
            b = base.get(r.seed)
            value = b.summary.get("val_loss") if b else None
            return value if isinstance(value, (int, float)) and r.task == "lm" else None

        def reach(r):   # a run that never got there has no step count (it once showed its budget, e.g. 40)
            return _m().reached_at(r, target(r)) if target(r) is not None else None

        def reached(r):
            return None if target(r) is None else float(_m().reached_at(r, target(r)) is not None)
        out.append(metric_row("Steps to reach gpt's final val loss (same seed; the seeds that reached it)", reach,
                              groups, 0))
        out.append(metric_row("Seeds that reached gpt's final val loss (share)", reached, groups, 2))
    out += [metric_row("Held-out exact match (%)", lambda r: _pct(r.summary.get("task_exact_match")), groups, 1),
            metric_row("Held-out per-character accuracy (%)", lambda r: _pct(r.summary.get("task_char_accuracy")),
                       groups, 1),
            metric_row("Input embedding row norm (mean, last probe)",
                       lambda r: probe_last(r, "embedding_norms/wte/mean"), groups, 3),
            metric_row("Eigen LR |alpha_A| (mean over layers, last probe)",
                       lambda r: probe_last(r, "ngpt_eigen_lrs/alpha_attn/*"), groups, 3)]
    return out


def _pct(x):
    return None if x is None else 100.0 * x


def figures(groups) -> dict:
    from normlab.report.plots import color_of, finish, plt

    lm = [v for v, rs in groups.items() if rs and rs[0].task == "lm"]
    if not lm:
        return {}
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for v in lm:
        for i, r in enumerate(groups[v]):
            if r.val:
                ax.plot(*zip(*sorted(r.val)), color=color_of(v, list(groups)), lw=1.4, alpha=0.8,
                        label=v if i == 0 else None)
    target = stat(r.summary.get("val_loss") for r in groups.get("gpt", [])).mean
    if np.isfinite(target):
        ax.axhline(target, color="k", ls="--", lw=1, label="gpt final val loss (mean over seeds)")
    finish(fig, ax, "Validation loss (decoder-only), one line per seed", "step", "loss (nats/token)")
    return {"val_to_target.png": (fig, "Validation loss of each decoder-only run; the dashed line is the baseline's "
                                       "final value, which the 'fewer steps' claim asks nGPT to reach first.")}


def notes(groups) -> list[str]:
    return ["Scale: about 0.2M parameters, 600 steps (enc-dec 300) on 5k names; the nGPT paper's 4-20x speedups are "
            "at 0.5B-1B parameters and 1k-4k context, so a verdict here is about this scale only.",
            "Eigen LRs are read from the ngpt_eigen_lrs probe: |alpha| as the model uses it (initial value 0.05)."]
