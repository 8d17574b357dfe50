"""Watched maxima over training (train/watch.py): per-run series and a two-panel figure.

Read from metrics.jsonl (keys `max_attn_logit`, `max_act`); shared by the nonorm and sinks reports.
Minimal on purpose: the probes package (branch probes) brings per-layer plots.
"""
from __future__ import annotations

import numpy as np

from ..train.rundir import read_metrics
from .plots import color_of, plt
from .runs import RunData
from .stats import Stat, stat

KEYS = {"max_attn_logit": "max |attention logit| (before clamp)", "max_act": "max |residual activation|"}


def series(run: RunData, key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(m["step"], m[key]) for m in read_metrics(run.run_dir / "metrics.jsonl") if key in m]
    if not points:
        return np.array([]), np.array([])
    steps, values = zip(*points)
    return np.array(steps), np.array(values, dtype=float)


def peak(runs: list[RunData], key: str) -> Stat:
    """Max over training per run (finite values), mean ± std over seeds."""
    return stat(r.summary.get(key) for r in runs)


def figure(groups: dict[str, list[RunData]], title: str):
    order = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for ax, (key, label) in zip(axes, KEYS.items()):
        for v, rs in groups.items():
            for i, r in enumerate(rs):
                steps, values = series(r, key)
                if len(steps):
                    ax.plot(steps, values, color=color_of(v, order), alpha=1.0 if i == 0 else 0.4, lw=1.4,
                            label=v if i == 0 else None)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
