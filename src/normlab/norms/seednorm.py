"""seednorm: Self-Rescaled Dynamic Normalization (Cai, Zhu, Liu, Min 2025, arXiv 2510.22777).

y = [tanh(x . b) * a + g] * x / rms(x), with a, b, g in R^d and x . b one scalar per token (the dot
product of the *raw* input with b), so the gain depends on the input and keeps some of the norm
information RMSNorm throws away. rms(x) = sqrt(mean(x^2) + eps), eps inside the root.
Init (our choice, the paper's init section not read): g = 1, a = 1, b = 0, so the module starts as a
plain RMSNorm (tanh(0) = 0); b gets a gradient from the first step (dy/db = a (1 - tanh^2) x x_hat),
a from the step after. [formula from the issue and the paper's abstract]
"""
import torch
from torch import nn

from . import kernels
from .base import register_norm
from .rmsnorm import rms_normalize


@register_norm("seednorm")
class SeeDNorm(nn.Module):
    """y = (tanh(x.b) * a + g) * x / rms(x), a, b, g in R^d, x.b one scalar per token  (Cai et al. 2025, arXiv 2510.22777)."""

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        self.eps = cfg.eps
        self.weight = nn.Parameter(torch.ones(dim)) if cfg.affine else None    # g: the static gain
        self.alpha = nn.Parameter(torch.ones(dim))                             # a: scale of the dynamic part
        self.beta = nn.Parameter(torch.zeros(dim))                             # b: the self-rescaling direction

    def forward(self, x):
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # the per-token dot product in at least float32
        if kernels.plain(self.beta):
            dot = (xf @ self.beta.to(xf.dtype)).unsqueeze(-1)            # N, 1
        else:  # a stacked run's [E, 1, C] b: the same dot product, broadcast
            dot = (xf * self.beta).sum(-1, keepdim=True)
        gain = torch.tanh(dot) * self.alpha
        gain = gain + self.weight if self.weight is not None else gain + 1
        return gain * rms_normalize(x, self.eps)
