"""sinks' metrics: the attention sink (per-head mass on position 0, from the attn_sinks probe), and whether
there are massive activations for a method to lower (the peak-activation claims read probe_peak_log10).

The sink rate is computed here from attn_sinks/per_head (layers x heads, mean over query rows of A[t, 0])
with Gu et al. 2024's threshold 0.3, so it works with or without the frontier probe's `rate` scalar.
"""
from __future__ import annotations

import numpy as np

from normlab.report.metrics import metric, precondition, probe_peak

SINK_THRESHOLD = 0.3


def head_mass(run) -> np.ndarray | None:
    """Mean attention on position 0 per (layer, head) at the last probe step."""
    probes = run.probes
    grid = probes.array("attn_sinks/per_head") if probes is not None else None
    return np.asarray(grid, float) if grid is not None and np.size(grid) else None


@metric("sink_rate", discrete=True)
def sink_rate(run):
    """Share of (layer, head) pairs whose mean attention to position 0 exceeds 0.3 (Gu et al. 2024), at the end."""
    grid = head_mass(run) if run.status == "complete" else None
    return float(np.mean(grid > SINK_THRESHOLD)) if grid is not None and np.isfinite(grid).all() else None


@metric("first_position_share")
def first_position_share(run):
    """Mean attention mass on position 0 over every layer, head and query row, at the end of training."""
    grid = head_mass(run) if run.status == "complete" else None
    return float(grid.mean()) if grid is not None and np.isfinite(grid).all() else None


@precondition("sinks_present")
def sinks_present(groups, variants: list):
    """Each named variant has sink heads (mean attention to position 0 above 0.3) in some run: without a sink
    there is nothing for gating to remove."""
    rates = {}
    for v in variants:
        values = [x for r in groups.get(v, []) if (x := sink_rate(r)) is not None]
        if not values:
            return False, f"{v}: no attention-sink probe data"
        rates[v] = max(values)
    ok = all(x > 0 for x in rates.values())
    return ok, ", ".join(f"{v}: up to {x:.0%} of heads sink" for v, x in rates.items()) + " (needs > 0 for each)"


MASSIVE = 100.0  # Sun et al. 2024 (arXiv 2402.17762): massive activations are > 100 and ~1000x the median


@precondition("massive_activations_present")
def massive_activations_present(groups, variants: list, key: str = "massive_activations/top1/*",
                                min_peak: float = MASSIVE):
    """Each named variant's peak |residual activation| over training exceeds `min_peak` in some run: a claim
    that a method lowers the outliers needs outliers to lower (the paper's baseline peaks at 6000)."""
    peaks = {}
    for v in variants:
        values = [x for r in groups.get(v, []) if (x := probe_peak(r, key)) is not None]
        if not values:
            return False, f"{v}: no massive-activation probe data"
        peaks[v] = max(values)
    ok = all(x > min_peak for x in peaks.values())
    return ok, ", ".join(f"{v}: peak |activation| {x:.3g}" for v, x in peaks.items()) + f" (needs > {min_peak:g})"
