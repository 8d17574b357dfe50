"""ffn_spectrum: the participation ratio of the FFN's hidden activations, per layer (NerVE, arXiv 2603.06922).

The hidden activations are the input of each MLP's output projection (after GELU / ReLU, or SwiGLU's
product), h with H channels over the probe batch's tokens. With C their channel covariance (centred over
tokens) and lambda its eigenvalues, PR = (sum lambda)^2 / sum lambda^2 = tr(C)^2 / ||C||_F^2: 1 when one
direction carries all the variance, H when all carry the same. NerVE reports "spectral inertia" in
normalization-free GELU models (PR ~ 1) and a ~200x larger PR with ReLU: an attention-free signature of
the failure Jha & Reagen call entropic overload. Keys: `pr/<layer>` and `pr_frac/<layer>` (PR / H).
"""
from __future__ import annotations

import math

import torch

from .base import Figure, Probe, register_probe
from .recorder import layer_of


def participation_ratio(h: torch.Tensor) -> float:
    """tr(C)^2 / ||C||_F^2 of the channel covariance of h (..., H) over its rows; NaN without any variance."""
    h = h.detach().double().reshape(-1, h.shape[-1])
    if h.shape[0] < 2:
        return math.nan
    c = h - h.mean(0, keepdim=True)
    cov = c.T @ c / (h.shape[0] - 1)
    fro2 = float(cov.pow(2).sum())
    if not math.isfinite(fro2) or fro2 <= 0:
        return math.nan
    return float(torch.trace(cov)) ** 2 / fro2


@register_probe("ffn_spectrum")
class FFNSpectrum(Probe):
    """participation ratio of the FFN hidden activations' covariance per layer (1: one direction, H: isotropic)."""

    input_patterns = ("**.blocks.*.mlp.proj",)
    figures = (Figure("layers", "pr", "probe_ffn_pr.png", "FFN participation ratio per layer",
                      "Participation ratio (sum of eigenvalues)^2 / sum of squared eigenvalues of the covariance of "
                      "each FFN's hidden activations (the output projection's input) over training: about 1 when one "
                      "direction carries the variance ('spectral inertia', NerVE arXiv 2603.06922: norm-free GELU), "
                      "up to the hidden width when the variance is spread.", log=True),)

    def reduce(self, view):
        out = {}
        for name, h in view.inputs.items():
            if not name.endswith("mlp.proj"):
                continue
            pr = participation_ratio(h)
            out[f"pr/{layer_of(name)}"] = pr
            out[f"pr_frac/{layer_of(name)}"] = pr / h.shape[-1]
        return out
