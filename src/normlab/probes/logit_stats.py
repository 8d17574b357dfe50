"""logit_stats: the largest attention logit per layer and the scale of the output logits.

Attention logits q.k/sqrt(D) are taken before any clamp/soft-cap (what those stabilizers hide);
output logits are the model's return value (after out_logit_softcap, what the loss sees). Seed 001
(CS336 no-norm ablation) watches both grow before a divergence.
"""
from __future__ import annotations

import math

import torch

from .base import Figure, Probe, register_probe
from .recorder import ATTENTION_PATTERNS


def finite_max(t: torch.Tensor) -> float:
    """max over the finite entries (masked -inf excluded); NaN if a NaN or +inf is present, or nothing is finite.
    One reduction: max propagates NaN and returns +inf if present, and -inf only when every entry is -inf."""
    if t.numel() == 0:
        return math.nan
    m = float(t.max())
    return m if math.isfinite(m) else math.nan


@register_probe("logit_stats")
class LogitStats(Probe):
    """max attention logit q.k/sqrt(D) per layer (before clamp/cap); output logits max |z| and std."""

    patterns = ATTENTION_PATTERNS + ("",)
    peaks = {"max_attn_logit": "attn_max/"}
    figures = (Figure("layers", "attn_max", "probe_attn_logit_max.png", "Largest attention logit q.k/sqrt(D) per layer",
                      "The maximum pre-softmax attention logit per layer (before any clamp or cap). exp() overflows "
                      "float32 near 88.7; without normalization these grow with the learning rate (Wortsman et al. "
                      "2023)."),)

    def reduce(self, view):
        out = {f"attn_max/{a.label}": finite_max(a.scores) for a in view.attention}
        z = view.logits
        if z is not None:
            z = z.detach().double()
            out["out_max_abs"], out["out_std"] = float(z.abs().max()), float(z.std())
        return out
