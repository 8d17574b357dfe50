"""massive_activations: top-3 and median |h| of the residual stream after each block, and where they sit.

Sun, Chen, Kolter & Liu 2024 (arXiv 2402.17762; locuslab/massive-activations main_llm.py --exp2):
hook each block's output, take |h| over all tokens x channels, keep the top 3 values and the median.
Their definition of "massive" (|a| > 100 and ~1000x the median) is left to the report: we keep the
numbers, plus the channel and position (token index in the sequence) of each top value.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Figure, Probe, register_probe
from .recorder import labels_array


def top_and_median(h: torch.Tensor, k: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(top-k |h|, their channels, their positions, median |h|) of a B,T,C tensor; non-finite ranks first."""
    a = h.detach().abs().double()
    a = torch.where(torch.isfinite(a), a, torch.full_like(a, float("inf")))
    values, flat = a.flatten().topk(min(k, a.numel()))
    C, T = a.shape[-1], a.shape[-2]
    finite = a[torch.isfinite(a)]
    median = float(finite.median()) if finite.numel() else float("nan")
    return values.cpu().numpy(), (flat % C).cpu().numpy(), ((flat // C) % T).cpu().numpy(), median


@register_probe("massive_activations")
class MassiveActivations(Probe):
    """top-3 and median |h| of the residual stream per layer, with channel and position (Sun et al. 2024)."""

    patterns = ("**.blocks.*",)
    peaks = {"max_act": "top1/"}
    figures = (
        Figure("layers", "top1", "probe_massive_top1.png", "Largest |h| of the residual stream per layer",
               "The top |activation| after each block over training (Sun et al. 2024): massive activations "
               "appear after the first layers and stay.", log=True),
        Figure("profile", "", "probe_massive_activations.png", "Massive activations: top-3 and median |h| per layer",
               "Top-3 and median |h| of the residual stream per layer at the last probe step; a top value "
               "1000x the median is a massive activation."),
    )

    def reduce(self, view):
        out, tops, channels, positions, medians, labels = {}, [], [], [], [], []
        for label, h in view.residual:
            top, ch, pos, med = top_and_median(h)
            tops.append(top), channels.append(ch), positions.append(pos), medians.append(med), labels.append(label)
            out[f"top1/{label}"], out[f"median/{label}"] = float(top[0]), med
        if labels:
            out.update(top3=np.stack(tops), top_channel=np.stack(channels), top_position=np.stack(positions),
                       median=np.array(medians), labels=labels_array(labels))
        return out
