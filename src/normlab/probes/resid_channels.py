"""resid_channels: the residual-sink channels, ranked: mean |h| per channel of the residual stream per layer.

Qiu et al. 2026 (arXiv 2601.22966, the residual-sink visualization): H^j_avg = mean over tokens of
|H^j| per channel j, sorted in descending order; a residual sink is a channel far above the rest,
input-independent and fixed across tokens (the norm then scales it down with a tiny gain). Per layer
(block outputs): the per-channel means (`vec/<layer>`, by index and sorted in the figure), the top-5
channels and their means (`top_channels`, `top_values`, layers x 5), `top1/<layer>` and
`ratio/<layer>` = top-1 mean / median channel mean (1 when no channel stands out).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Figure, Probe, register_probe
from .recorder import labels_array

TOP_K = 5


def channel_means(h: torch.Tensor) -> np.ndarray:
    """mean over every axis but the last of |h|: (..., C) -> C."""
    return h.detach().abs().double().reshape(-1, h.shape[-1]).mean(0).cpu().numpy()


@register_probe("resid_channels")
class ResidChannels(Probe):
    """mean |h| per residual channel per layer, ranked: top-5 channels and top/median ratio (Qiu et al. 2026)."""

    patterns = ("**.blocks.*",)
    figures = (Figure("channels", "vec/", "probe_resid_channels.png", "Mean |h| per residual channel",
                      "Mean |activation| of each residual-stream channel after each block at the last probe step, "
                      "seed 0, by channel index (left) and sorted (right). A channel far above the others is a "
                      "residual sink (Qiu et al. 2026)."),
               Figure("layers", "ratio", "probe_resid_channel_ratio.png", "Top residual channel / median channel",
                      "Mean |h| of the largest residual channel over the median channel's, per layer, over training.",
                      log=True))

    def reduce(self, view):
        out, tops, values, labels = {}, [], [], []
        for label, h in view.residual:
            means = channel_means(h)
            order = np.argsort(-means, kind="stable")[:TOP_K]
            out[f"vec/{label}"] = means
            out[f"top1/{label}"] = float(means[order[0]])
            out[f"ratio/{label}"] = float(means[order[0]] / np.median(means)) if np.median(means) > 0 else np.nan
            tops.append(order), values.append(means[order]), labels.append(label)
        if labels and len({len(t) for t in tops}) == 1:
            out.update(top_channels=np.stack(tops), top_values=np.stack(values), labels=labels_array(labels))
        return out
