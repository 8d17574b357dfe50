"""act_kurtosis: kurtosis of the activations per layer, in the residual stream and in each sublayer's output.

Outlier features make an activation vector heavy-tailed: a few channels far larger than the rest.
Per token, across channels, kurt = mean_c (h - mu)^4 / (mean_c (h - mu)^2)^2 (population moments;
3 for Gaussian channels, up to C for one channel carrying everything; excess kurtosis = kurt - 3,
the number Park et al. 2025, Outlier-Safe Pre-Training, report: 1818.56 for Adam vs 0.04 for OSP),
then the mean over tokens. Tokens with zero variance have none and are left out. Read from the block
outputs (`resid/<layer>`, the residual stream) and the attention and MLP modules' outputs
(`attn/<layer>`, `mlp/<layer>`: what each sublayer adds, before any out-norm).
"""
from __future__ import annotations

import math

import torch

from .base import Figure, Probe, register_probe
from .recorder import layer_of

SOURCES = {"resid": "**.blocks.*", "attn": "**.blocks.*.attn", "mlp": "**.blocks.*.mlp"}


def token_kurtosis(h: torch.Tensor) -> float:
    """Mean over tokens of the across-channel kurtosis of h (..., C); NaN if no token has any variance."""
    h = h.detach().double().reshape(-1, h.shape[-1])
    c = h - h.mean(-1, keepdim=True)
    m2, m4 = c.pow(2).mean(-1), c.pow(4).mean(-1)
    k = m4 / m2.pow(2)
    k = k[torch.isfinite(k) & (m2 > 0)]
    return float(k.mean()) if k.numel() else math.nan


@register_probe("act_kurtosis")
class ActKurtosis(Probe):
    """per-token kurtosis across channels (Gaussian 3) of the residual stream and attn/MLP outputs per layer."""

    patterns = tuple(SOURCES.values())
    figures = tuple(Figure("layers", key, f"probe_kurtosis_{key}.png", f"Activation kurtosis per layer: {what}",
                           f"Mean over tokens of the kurtosis across channels of {what} (3 for Gaussian channels, up "
                           "to d_model when one channel carries everything) over training. Growth marks outlier "
                           "channels forming (Park et al. 2025: the excess kurtosis of an Adam-trained LLM is ~1800).",
                           log=True)
                    for key, what in [("resid", "the residual stream"), ("attn", "the attention output"),
                                      ("mlp", "the MLP output")])

    def reduce(self, view):
        out = {}
        for key, pattern in SOURCES.items():
            for name, h in view.matching(pattern):
                out[f"{key}/{layer_of(name)}"] = token_kurtosis(h)
        return out
