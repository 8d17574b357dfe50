"""derf: Dynamic erf (Chen, Lu, Zhu, Sun, Liu 2025, "Stronger Normalization-Free Transformers", arXiv 2512.10938).

y = g * erf(a * x + s) + b (their eq. 10): a point-wise function found by a search over shapes that
replace the norm layers of a pre-norm Transformer. a and s are learned scalars. Inits follow
x-transformers' `Derf` (read: init_alpha = 0.5, init_bias s = 0, gamma 1, beta 0); like DyT here, a
per-position alpha init is offered (`alpha_attn` / `alpha_mlp` / `alpha_final`, all 0.5 by default)
and the bias b follows model.norm.bias (default off, as DyT's LLaMA variant). Derf squashes but does not
normalize (no statistic of x), so `normalizes = False`: the validity matrix keeps it off the
residual sum. `squash_argument(x)` = a x + s is what the saturation probe reads.
"""
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError
from .base import norm_options, register_norm
from .dyt import DyT, alpha_for_role


@register_norm("derf")
class Derf(nn.Module):
    """y = g * erf(a * x + s) + b, scalars a (init 0.5) and s (init 0)  (Chen et al. 2025, eq. 10)."""

    normalizes = False

    @dataclass
    class Options(DyT.Options):
        shift: float = 0.0
        """initial shift s inside erf (x-transformers init_bias: 0)"""

        def __post_init__(self):
            super().__post_init__()
            if not math.isfinite(self.shift):
                raise ConfigError(f"model.norm.options.shift={self.shift} must be a finite number")

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        opts = norm_options(type(self), cfg)
        self.alpha = nn.Parameter(torch.tensor(alpha_for_role(opts, role)))
        self.shift = nn.Parameter(torch.tensor(opts.shift))
        self.weight = nn.Parameter(torch.ones(dim)) if cfg.affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if cfg.bias else None

    def squash_argument(self, x: torch.Tensor) -> torch.Tensor:
        """The argument of erf: a * x + s (scalars broadcast, also a stacked run's [E, 1, 1])."""
        return self.alpha * x + self.shift

    def forward(self, x):
        y = torch.erf(self.squash_argument(x))
        if self.weight is not None:
            y = y * self.weight
        return y + self.bias if self.bias is not None else y
