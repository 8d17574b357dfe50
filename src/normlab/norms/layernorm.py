"""layernorm (Ba et al. 2016, arXiv 1607.06450)."""
import torch
import torch.nn.functional as F
from torch import nn

from . import register_norm


@register_norm("layernorm")
class LayerNorm(nn.Module):
    """y = g * (x - mean) / sqrt(var_biased + eps) + b  (Ba et al. 2016, eq. 4)."""

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        self.dim, self.eps = dim, cfg.eps
        self.weight = nn.Parameter(torch.ones(dim)) if cfg.affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if cfg.bias else None

    def forward(self, x):
        return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
