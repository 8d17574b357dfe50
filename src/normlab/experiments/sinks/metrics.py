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


# ---- seed 000's weight analysis (Qiu et al. 2026, arXiv 2601.22966; ../shared/reference/phenomena.md sec. 1.2)
# A residual-sink channel j* after block l: the top channel's mean |h| is >= 10x the median channel's (the
# resid_channels probe). The norm that reads that residual next is block l+1's norm_attn_in (the final norm after
# the last block). Seed 000 saw that norm's gain dip near zero on j*, PreAffine's lambda_1 spike there (paper: 7.19,
# with the gain 0.06), and GatedNorm's gate do the gain's job. Each metric is a robust z-score of channel j*
# against the other channels of the same vector: (w_j* - median) / (1.4826 MAD); <= -3 an outlier low, >= 3 high.

RESIDUAL_SINK_RATIO = 10.0


def _last_arrays(run) -> dict:
    probes = run.probes if run.status == "complete" else None
    return probes.arrays[max(probes.arrays)] if probes is not None and probes.arrays else {}


def residual_sink(run) -> tuple[int, int, float] | None:
    """(layer l, channel j*, ratio) of the block output with the largest top/median channel ratio at the end;
    None without resid_channels data."""
    arrays, best = _last_arrays(run), None
    for key, means in arrays.items():
        if not key.startswith("resid_channels/vec/layer"):
            continue
        means = np.asarray(means, float)
        median = float(np.median(means))
        ratio = float(means.max() / median) if median > 0 else float("inf")
        layer = int(key.rsplit("layer", 1)[1])
        if best is None or ratio > best[2]:
            best = (layer, int(np.argmax(means)), ratio)
    return best


def robust_z(vector: np.ndarray, j: int) -> float:
    """(v_j - median of the others) / (1.4826 * their median absolute deviation)."""
    others = np.delete(np.asarray(vector, float), j)
    med = float(np.median(others))
    mad = 1.4826 * float(np.median(np.abs(others - med)))
    return (float(vector[j]) - med) / max(mad, 1e-12)


def _following_norm_z(run, suffix: str, source: str = "norm_weights/vec/") -> float | None:
    """Robust z of channel j* in the vector `suffix` of the norm that reads the sink's residual next."""
    sink = residual_sink(run)
    if sink is None or sink[2] < RESIDUAL_SINK_RATIO:
        return None
    layer, j, _ = sink
    arrays = _last_arrays(run)
    n_layer = int((run.config.get("model") or {}).get("n_layer", 0))
    name = f"layer{layer + 1}.norm_attn_in" if layer + 1 < n_layer else "norm_final"
    vector = arrays.get(f"{source}{name}{suffix}")
    return robust_z(np.asarray(vector, float), j) if vector is not None else None


@metric("sink_channel_gain_z")
def sink_channel_gain_z(run):
    """Robust z of the following RMSNorm's gain on the residual-sink channel j* (seed 000: an outlier low)."""
    return _following_norm_z(run, ".weight")


@metric("sink_channel_preaffine_z")
def sink_channel_preaffine_z(run):
    """Robust z of PreAffine's lambda_1 (pre_scale) on the residual-sink channel j* (seed 000: it grows)."""
    return _following_norm_z(run, ".pre_scale")


@metric("sink_channel_gate_z")
def sink_channel_gate_z(run):
    """Robust z of GatedNorm's mean gate on the residual-sink channel j* (seed 000: low there)."""
    return _following_norm_z(run, "", source="norm_gates/vec/")


@precondition("residual_sink_present")
def residual_sink_present(groups, variants: list, min_ratio: float = RESIDUAL_SINK_RATIO):
    """Every run of each named variant has a residual-sink channel: the top channel's mean |h| >= 10x the median
    channel's in some layer (Qiu et al. 2026). Without one there is no channel for a gain to dip on."""
    parts, ok = [], True
    for v in variants:
        sinks = [residual_sink(r) for r in groups.get(v, [])]
        if not sinks or any(s is None for s in sinks):
            return False, f"{v}: no resid_channels probe data"
        ratios = [s[2] for s in sinks]
        ok &= all(x >= min_ratio for x in ratios)
        parts.append(f"{v}: top/median channel ratio {min(ratios):.3g}-{max(ratios):.3g} over {len(ratios)} runs")
    return ok, "; ".join(parts) + f" (needs >= {min_ratio:g} in every run: a residual-sink channel)"
