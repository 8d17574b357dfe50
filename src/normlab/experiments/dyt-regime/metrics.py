"""dyt-regime's metrics: a squashing norm's loss relative to RMSNorm on the same seed and training set, and how
that relative loss moves with the training-set size (Verma 2026, arXiv 2604.23434).

A side is a group of one seed's runs: a size (every kind trained on it) or all sizes. Losses are the
final validation losses as measured, not capped at ln V: on the smallest set RMSNorm overfits past the
loss of a uniform guess, and a cap would hide by how much. A run that diverged has no final loss; its
side's value is then undefined and the claim says so (diverged: nee).
"""
from __future__ import annotations

import math

import numpy as np

from normlab.report.metrics import metric


def kind_of(run) -> str:
    return ((run.config.get("model") or {}).get("norm") or {}).get("kind", "")


def train_bytes(run) -> int | None:
    """Bytes of the run's training split as read (summary.json's data statistics)."""
    n = ((run.summary.get("data") or {}).get("train") or {}).get("n_bytes")
    return int(n) if isinstance(n, (int, float)) and n > 0 else None


def final_loss(run) -> float | None:
    """Final validation loss of a complete run (None for a diverged or unfinished one)."""
    v = run.summary.get("val_loss")
    return float(v) if run.status == "complete" and isinstance(v, (int, float)) and math.isfinite(v) else None


def relative(runs, kind: str) -> float | None:
    """(loss of `kind` - loss of rmsnorm) / loss of rmsnorm among one seed's runs on one training set."""
    by_kind = {kind_of(r): r for r in runs}
    if kind not in by_kind or "rmsnorm" not in by_kind:
        return None
    a, b = final_loss(by_kind[kind]), final_loss(by_kind["rmsnorm"])
    return (a - b) / b if a is not None and b else None


def by_size(runs) -> dict[int, list]:
    out: dict[int, list] = {}
    for r in runs:
        n = train_bytes(r)
        if n is not None:
            out.setdefault(n, []).append(r)
    return dict(sorted(out.items()))


@metric("rel_loss_vs_rmsnorm", scope="group", units="fraction of RMSNorm's loss")
def rel_loss_vs_rmsnorm(runs, kind: str = "dyt"):
    """(val loss of `kind` - RMSNorm's) / RMSNorm's, same seed and training set (< 0: the squashing norm is better)."""
    sizes = by_size(runs)
    if len(sizes) != 1:  # one training set per side
        return None
    return relative(next(iter(sizes.values())), kind)


@metric("rel_loss_slope", scope="group", units="per doubling of the training set")
def rel_loss_slope(runs, kind: str = "dyt"):
    """Least-squares slope of the relative loss against log2(training bytes) (> 0: worse with more data)."""
    points = [(math.log2(n), v) for n, rs in by_size(runs).items() if (v := relative(rs, kind)) is not None]
    if len(points) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])
