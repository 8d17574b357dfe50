"""rmsnorm (Zhang & Sennrich 2019, arXiv 1910.07467)."""
import torch
import torch.nn.functional as F
from torch import nn

from . import register_norm


def rms_normalize(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """weight * x / sqrt(mean(x^2) + eps), computed in float32 and cast back (HF Llama/OLMo 2 convention).

    float32 inputs take F.rms_norm's kernel: on a 2-core AVX-512 CPU it measured 1.3-1.5x faster
    at 16x256x256 (equal at tiny shapes) than the written-out form, which costs four elementwise
    passes each way; still ~3-6x F.layer_norm, so `train.compile=norms|model` is the fast path
    (benchmarks/norm_kernels.py). Lower precisions are upcast by hand so the statistics are float32
    whatever the kernel does. The two forms agree to float rounding.
    """
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    xf = x.float()
    y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return y * weight if weight is not None else y


@register_norm("rmsnorm")
class RMSNorm(nn.Module):
    """y = g * x / sqrt(mean(x^2) + eps)  (Zhang & Sennrich 2019, eq. 4; eps inside the root)."""

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        self.eps = cfg.eps
        self.weight = nn.Parameter(torch.ones(dim)) if cfg.affine else None

    def forward(self, x):
        return rms_normalize(x, self.eps, self.weight)
