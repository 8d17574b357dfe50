"""layernorm (Ba et al. 2016, arXiv 1607.06450)."""
import torch
import torch.nn.functional as F
from torch import nn

from . import kernels
from .base import register_norm


@register_norm("layernorm")
class LayerNorm(nn.Module):
    """y = g * (x - mean) / sqrt(var_biased + eps) + b  (Ba et al. 2016, eq. 4)."""

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        self.dim, self.eps = dim, cfg.eps
        self.weight = nn.Parameter(torch.ones(dim)) if cfg.affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if cfg.bias else None

    def forward(self, x):
        if kernels.plain(self.weight, self.bias):
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        # a stacked run's per-member [E, 1, C] parameters (training/stacked.py): the fused kernel without them, then
        # each member's affine (about half the formula's cost at any size: benchmarks/stacked_norms.py)
        if x.dtype in (torch.float32, torch.float64):
            y = F.layer_norm(x, (self.dim,), None, None, self.eps)
            if self.weight is not None and self.bias is not None:
                return torch.addcmul(self.bias, y, self.weight)
            return y * self.weight if self.weight is not None else y + self.bias if self.bias is not None else y
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in at least float32
        mean = xf.mean(-1, keepdim=True)
        y = ((xf - mean) * torch.rsqrt((xf - mean).square().mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        y = y * self.weight if self.weight is not None else y
        return y + self.bias if self.bias is not None else y
