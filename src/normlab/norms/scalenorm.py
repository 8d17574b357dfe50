"""scalenorm (Nguyen & Salazar 2019, "Transformers without Tears", arXiv 1910.05895, eq. 3).

Reference code: tnq177/transformers_without_tears layers.py (`ScaleNorm`): one scalar gain g,
initialised to sqrt(d), and the L2 norm clamped from below by eps. Since ||x||_2 / sqrt(d) = rms(x),
this is RMSNorm with a single scalar gain (and eps outside the root).
"""
import math

import torch
from torch import nn

from . import kernels
from .base import register_norm


@register_norm("scalenorm")
class ScaleNorm(nn.Module):
    """y = g * x / max(||x||_2, eps), scalar g init sqrt(d)  (Nguyen & Salazar 2019, eq. 3)."""

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        self.eps = cfg.eps
        scale = torch.tensor(math.sqrt(dim))
        if cfg.affine:
            self.scale = nn.Parameter(scale)
        else:  # fixed g = sqrt(d): output rms is 1, like an RMSNorm without gain
            self.register_buffer("scale", scale, persistent=False)

    def forward(self, x):
        if kernels.use_cpu_kernels(x, self.scale):
            return kernels.scale_norm(x, self.scale, self.eps)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16 sums of squares lose digits
        y = xf / xf.norm(dim=-1, keepdim=True).clamp(min=self.eps)
        return (self.scale * y).to(x.dtype)
