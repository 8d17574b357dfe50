"""resid_peak: ||h_0|| / median_t ||h_t|| per layer, the residual-state peak at the first token (Guo et al. 2024).

Guo et al. (arXiv 2410.13835): the sink token's residual state grows far above the others' ("residual-state
peaks"), the token-level face of massive activations (Sun et al. 2024, arXiv 2402.17762, who find them at the
first token). On the residual stream after each block (B,T,C): ratio = mean_b ||h[b,0]|| / median over
(b, t >= 1) of ||h[b,t]||; 1 = position 0 is like the others. `ratio/<layer>`, `norm0/<layer>` (mean ||h_0||),
`ratio` (per layer, npz) and `max`.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Figure, Probe, register_probe
from .recorder import labels_array


def peak_ratio(h: torch.Tensor) -> tuple[float, float]:
    """h: B,T,C -> (mean_b ||h_0|| / median_{b, t>=1} ||h_t||, mean_b ||h_0||); ratio nan when T == 1."""
    norms = h.detach().double().norm(dim=-1)                      # B,T
    first = float(norms[:, 0].mean())
    if norms.shape[1] < 2:
        return float("nan"), first
    median = float(norms[:, 1:].flatten().median())
    return (first / median if median > 0 else float("nan")), first


@register_probe("resid_peak")
class ResidPeak(Probe):
    """||h_0|| / median_t ||h_t|| per layer: > 1 is a residual-state peak at the first token (Guo et al. 2024)."""

    patterns = ("**.blocks.*",)
    figures = (Figure("layers", "ratio", "probe_resid_peak.png", "Residual peak ||h_0|| / median ||h_t||",
                      "Per layer, the first token's residual-stream norm over the median of the others', over "
                      "training (Guo et al. 2024's residual-state peak).", log=True),)

    def reduce(self, view):
        out, ratios, labels = {}, [], []
        for label, h in view.residual:
            if h.dim() != 3:
                continue
            ratio, first = peak_ratio(h)
            out[f"ratio/{label}"], out[f"norm0/{label}"] = ratio, first
            ratios.append(ratio), labels.append(label)
        if labels:
            arr = np.array(ratios)
            out.update(ratio=arr, labels=labels_array(labels))
            out["max"] = float(np.nanmax(arr)) if np.isfinite(arr).any() else float("nan")
        return out
