"""single_scale_rmsnorm: RMSNorm with one scalar gain (Single-Scale RMSNorm, "SSNorm", of Outlier-Safe
Pre-Training; Park, Lee, Yoon, Hwang, Kang 2025, arXiv 2506.19697).

y = g * x / sqrt(mean(x^2) + eps) with g a single learned scalar: no per-channel gain, so no channel can
be amplified on its own (the paper's argument: per-channel gains help grow the residual-sink channels
that break 4-bit quantization). g starts at 1, so at init it is an RMSNorm without gain (output rms 1).
Unlike scalenorm (g init sqrt(d), eps clamping the L2 norm) eps sits inside the root, as in RMSNorm.
[formula and init from the issue and the paper's abstract; the paper's code was not read]
"""
import torch
from torch import nn

from .base import register_norm
from .rmsnorm import rms_normalize


@register_norm("single_scale_rmsnorm")
class SingleScaleRMSNorm(nn.Module):
    """y = g * x / sqrt(mean(x^2) + eps), one scalar g init 1  (Park et al. 2025, Outlier-Safe Pre-Training)."""

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        self.eps = cfg.eps
        self.scale = nn.Parameter(torch.ones(())) if cfg.affine else None

    def forward(self, x):
        y = rms_normalize(x, self.eps)  # the fused kernel without a weight; the scalar (or [E, 1, 1]) multiplies after
        return y * self.scale if self.scale is not None else y
