"""preaffine_rmsnorm (Qiu et al. 2026, Qwen team, arXiv 2601.22966, section 3.3).

y = g * RMSNorm0(l1 * x): a learnable per-channel scale l1 *before* the normalization, so a
channel can grow inside the statistic (the "residual sink" becomes a learnable volume knob
instead of a huge activation). The RMSNorm keeps its own gain g. The paper does not state the
init of l1; we follow the third-party reimplementation kubotadaichi/gated-norm-experiment
(model.py): ones, so the module starts as a plain RMSNorm.
"""
import torch
from torch import nn

from .base import register_norm
from .rmsnorm import rms_normalize


@register_norm("preaffine_rmsnorm")
class PreAffineRMSNorm(nn.Module):
    """y = g * RMSNorm(l1 * x), l1 in R^d init 1, g in R^d init 1  (Qiu et al. 2026, sec. 3.3)."""

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        self.eps = cfg.eps
        self.pre_scale = nn.Parameter(torch.ones(dim))  # l1: always learnable, it is the point of the kind
        self.weight = nn.Parameter(torch.ones(dim)) if cfg.affine else None

    def forward(self, x):
        return rms_normalize(x * self.pre_scale, self.eps, self.weight)
