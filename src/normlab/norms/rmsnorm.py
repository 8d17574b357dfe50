"""rmsnorm (Zhang & Sennrich 2019, arXiv 1910.07467)."""
import torch
import torch.nn.functional as F
from torch import nn

from . import kernels
from .base import register_norm


def rms_normalize(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """weight * x / sqrt(mean(x^2) + eps), statistics in at least float32 (HF Llama/OLMo 2 convention).

    Three forms, one formula (they agree to float rounding; tests/unit/norms/test_kernels.py):
    eager float32/64 on the CPU takes kernels.rms_norm from kernels.RMS_KERNEL_MIN_NUMEL elements on (fused
    LayerNorm backward, ~1.55x F.layer_norm where F.rms_norm's composite costs 4-10x; benchmarks/norm_kernels.py);
    float32/64 elsewhere takes F.rms_norm (fused kernels on CUDA; under torch.compile inductor fuses
    it); lower precisions are upcast by hand so the statistics are float32 whatever the kernel does.
    """
    if kernels.use_cpu_kernels(x, weight, min_numel=kernels.RMS_KERNEL_MIN_NUMEL):
        return kernels.rms_norm(x, weight, eps)
    if weight is not None and x.numel() >= kernels.RMS_KERNEL_MIN_NUMEL and kernels.use_cpu_kernels(x):
        return kernels.rms_norm(x, None, eps) * weight   # a stack's [E, 1, C] gains: fused kernel, then each member's
    if x.dtype in (torch.float32, torch.float64) and kernels.plain(weight):
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    xf = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in at least float32
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
