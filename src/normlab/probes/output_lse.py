"""output_lse: log Z = logsumexp of the output logits per position, the quantity z-loss pulls to 0.

Wortsman et al. 2023 (arXiv 2309.14322, sec. 3.1.2, after PaLM): softmax is shift-invariant, so
nothing in the cross-entropy holds log Z in place; at high learning rates without weight decay it
drifts far from 0 and the logits diverge from the log-probabilities, which z-loss (1e-4 log^2 Z)
prevents. Over the probe batch's target positions (all positions when no targets are given):
mean, mean |.|, std, min and max of log Z, and the largest |logit|.
"""
from __future__ import annotations

import torch

from ..data import IGNORE
from .base import Probe, register_probe


@register_probe("output_lse")
class OutputLSE(Probe):
    """log Z = logsumexp(z) of the output logits: mean, mean |log Z|, std, min, max (Wortsman et al. 2023)."""

    patterns = ("",)
    peaks = {"max_abs_log_z": "abs_max"}

    def reduce(self, view):
        z = view.logits
        if z is None:
            return {}
        z = z.detach().double()
        lse = torch.logsumexp(z, dim=-1)  # B,T
        if view.y is not None and view.y.shape == lse.shape:
            keep = view.y != IGNORE
            lse, z = lse[keep], z[keep]
        if lse.numel() == 0:
            return {}
        return {"mean": float(lse.mean()), "abs_mean": float(lse.abs().mean()),
                "std": float(lse.std()) if lse.numel() > 1 else 0.0, "min": float(lse.min()),
                "max": float(lse.max()), "abs_max": float(lse.abs().max()), "logit_max_abs": float(z.abs().max())}
