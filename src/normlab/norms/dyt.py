"""dyt: Dynamic Tanh (Zhu, Chen, He, LeCun, Liu, CVPR 2025, arXiv 2503.10622).

Reference code: jiachenzhu/DyT dynamic_tanh.py (`DyT`: one scalar alpha, default init 0.5, gain 1,
bias 0) and its LLaMA variant other_tasks/LLaMA/fms_fsdp/models/llama.py (no bias, alpha init set
per position: attention 0.8 / FFN 0.2 / final 0.2 for 7B). Here the bias follows model.norm.bias
(default off, as in the LLaMA variant) and alpha's init comes from model.norm.options by the
norm's role: attn_* (and q, k, or no role) -> alpha_attn, mlp_* -> alpha_mlp, final -> alpha_final.
DyT squashes but does not normalize (no statistic of x), so `normalizes = False`: the validity
matrix refuses it on the residual sum (post, deepnorm, mixln).
"""
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError
from . import kernels
from .base import norm_options, register_norm


DYT_KERNEL_MIN_NUMEL = 1 << 15


@register_norm("dyt")
class DyT(nn.Module):
    """y = g * tanh(a * x) + b, scalar a (init per position, default 0.5)  (Zhu et al. 2025, eq. 1)."""

    normalizes = False

    @dataclass
    class Options:
        alpha_attn: float = 0.5
        """initial alpha of the attention-side norms (LLaMA-7B recipe: 0.8)"""
        alpha_mlp: float = 0.5
        """initial alpha of the MLP-side norms (LLaMA-7B recipe: 0.2)"""
        alpha_final: float = 0.5
        """initial alpha of the final norm (LLaMA-7B recipe: 0.2)"""

        def __post_init__(self):
            for name in ("alpha_attn", "alpha_mlp", "alpha_final"):
                value = getattr(self, name)
                if not (math.isfinite(value) and value > 0):
                    raise ConfigError(f"model.norm.options.{name}={value} must be a positive number "
                                      "(alpha = 0 maps every input to the bias)")

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        opts = norm_options(type(self), cfg)
        self.alpha = nn.Parameter(torch.tensor(alpha_for_role(opts, role)))
        self.weight = nn.Parameter(torch.ones(dim)) if cfg.affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if cfg.bias else None

    def squash_argument(self, x: torch.Tensor) -> torch.Tensor:
        """The argument of tanh, a * x (what the saturation probe reads)."""
        return self.alpha * x

    def forward(self, x):
        # CPU torch.tanh is scalar code (~20x a multiply); below ~32K elements the kernel's extra small
        # ops cost more than tanh itself (measured: 1.7x vs 2.4x F.layer_norm at 8K, 2.7x vs 2.1x at 64K)
        if kernels.use_cpu_kernels(x, self.alpha, self.weight, self.bias, min_numel=DYT_KERNEL_MIN_NUMEL):
            return kernels.dyt(x, self.alpha, self.weight, self.bias)
        z = self.alpha * x
        # inductor's CPU tanh is slow as well: compiled, this form costs 1.96x F.layer_norm fwd+bwd, tanh 3.59x
        y = 2 * torch.sigmoid(2 * z) - 1 if x.device.type == "cpu" and torch.compiler.is_compiling() else torch.tanh(z)
        if self.weight is not None:
            y = y * self.weight
        return y + self.bias if self.bias is not None else y


def alpha_for_role(opts: "DyT.Options", role: str) -> float:
    if role == "final":
        return opts.alpha_final
    if role.startswith("mlp"):
        return opts.alpha_mlp
    return opts.alpha_attn
