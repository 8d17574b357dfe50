"""value_drain: ||v_0|| / mean_t ||v_t|| per layer and head, the value-state drain of a sink (Guo et al. 2024).

Guo et al. (arXiv 2410.13835, "Active-dormant attention heads"): a dormant head parks its attention on the
first token and makes that token's value small, so attending to it adds almost nothing (a "no-op"). On the
tapped value states v (B,H,T,D, after any v-norm): ratio = mean_b ||v[b,h,0]|| / mean_{b, t >= 1} ||v[b,h,t]||;
1 = position 0 is like any other, << 1 = a drain. `per_head` (layers x heads), `<layer>` = the smallest ratio
of the layer's heads, `min` over all of them.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Figure, Probe, register_probe
from .recorder import attention_label, labels_array


def drain_ratio(v: torch.Tensor) -> np.ndarray:
    """v: B,H,T,D -> H ratios ||v_0|| / mean_{t>=1} ||v_t|| (means over the batch); nan when T == 1."""
    norms = v.detach().double().norm(dim=-1)                      # B,H,T
    if norms.shape[-1] < 2:
        return np.full(norms.shape[1], np.nan)
    rest = norms[..., 1:].mean(dim=(0, 2))
    return (norms[..., 0].mean(0) / rest.clamp(min=1e-30)).cpu().numpy()


@register_probe("value_drain")
class ValueDrain(Probe):
    """||v_0|| / mean_t ||v_t|| per layer and head: < 1 is a value drain at the sink (Guo et al. 2024)."""

    patterns = ("**.tap_v",)
    figures = (Figure("heads", "per_head", "probe_value_drain.png", "Value drain ||v_0|| / mean ||v_t||",
                      "Per layer and head, the norm of the first token's value state over the mean of the others' "
                      "(Guo et al. 2024). Values far below 1 are value drains: the head's sink adds almost nothing.",
                      steps="last", cmap="viridis"),)

    def reduce(self, view):
        out, rows, labels = {}, [], []
        for name, v in view.matching("**.tap_v"):
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            if v.dim() != 4:
                continue
            ratio = drain_ratio(v)
            label = attention_label(parent)
            rows.append(ratio), labels.append(label)
            out[label] = float(np.nanmin(ratio)) if np.isfinite(ratio).any() else float("nan")
        if rows and len({len(r) for r in rows}) == 1:
            grid = np.stack(rows)
            out.update(per_head=grid, labels=labels_array(labels))
            out["min"] = float(np.nanmin(grid)) if np.isfinite(grid).any() else float("nan")
        return out
