"""rmsnorm (Zhang & Sennrich 2019, arXiv 1910.07467)."""
import torch
from torch import nn

from . import register_norm


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) computed in float32 and cast back (HF Llama/OLMo 2 convention).

    Written out rather than with F.rms_norm, whose CPU kernels were reported several times slower
    than F.layer_norm; benchmarks/norm_kernels.py measures both. The two agree to float rounding.
    """
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


@register_norm("rmsnorm")
class RMSNorm(nn.Module):
    """y = g * x / sqrt(mean(x^2) + eps)  (Zhang & Sennrich 2019, eq. 4; eps inside the root)."""

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        self.eps = cfg.eps
        self.weight = nn.Parameter(torch.ones(dim)) if cfg.affine else None

    def forward(self, x):
        y = rms_normalize(x, self.eps)
        return y * self.weight if self.weight is not None else y
