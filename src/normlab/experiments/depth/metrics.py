"""depth's metrics: per-block summaries from the depth_stats probe at the last probe step.

`late` = the last quarter of the blocks, `early` = the first quarter (at least one block each), as in
the Curse of Depth's "deep layers": their mean angular distance (input -> output), their mean skip
cost, and the variance growth through the stack.
"""
from __future__ import annotations

import math

import numpy as np

from normlab.report.metrics import metric


def profile(run, key: str) -> np.ndarray | None:
    """depth_stats/<key> per block at the last probe step that has it (var, angle or skip)."""
    probes = run.probes
    a = probes.array(f"depth_stats/{key}") if probes is not None else None
    return np.asarray(a, float) if a is not None and np.size(a) else None


def quarter(n: int) -> int:
    return max(1, n // 4)


def _finished(run) -> bool:
    return run.status == "complete"


@metric("log10_variance_growth")
def log10_variance_growth(run):
    """log10(variance after the last block / variance after the first), at the end of training."""
    v = profile(run, "var") if _finished(run) else None
    if v is None or len(v) < 2 or not (v > 0).all() or not np.isfinite(v).all():
        return None
    return float(math.log10(v[-1] / v[0]))


@metric("late_angle")
def late_angle(run):
    """Mean angular distance arccos(cos(h_in, h_out))/pi over the last quarter of the blocks."""
    a = profile(run, "angle") if _finished(run) else None
    return float(a[-quarter(len(a)):].mean()) if a is not None and np.isfinite(a).all() else None


@metric("late_minus_early_angle")
def late_minus_early_angle(run):
    """Mean angular distance of the last quarter of the blocks minus the first quarter's (< 0: deep blocks turn less)."""
    a = profile(run, "angle") if _finished(run) else None
    if a is None or len(a) < 2 or not np.isfinite(a).all():
        return None
    q = quarter(len(a))
    return float(a[-q:].mean() - a[:q].mean())


@metric("late_skip_cost", units="nats/token")
def late_skip_cost(run):
    """Mean loss increase on the probe batch when one of the last quarter of the blocks is skipped."""
    s = profile(run, "skip") if _finished(run) else None
    return float(s[-quarter(len(s)):].mean()) if s is not None and np.isfinite(s).all() else None
