"""gated_dyt: GatedDyT (Qiu et al. 2026, Qwen team, arXiv 2601.22966, Table 1 "DyT+GA+GatedDyT").

The GatedNorm gate (gated_rmsnorm.py) applied after DyT instead of after RMSNorm:
y = DyT(x) = g * tanh(a x) + b, then y' = sigmoid(W_up silu(W_down y)) * y, W_down: d -> r, W_up: r -> d,
no bias, rank r = 16 by default (`model.norm.options.rank`). DyT's options (alpha per position) and
init stay as in dyt.py; the gate's init is GatedNorm's (`init: torch` = nn.Linear's Kaiming uniform,
as the reimplementation kubotadaichi/gated-norm-experiment; `model` = N(0, model.init_std)); the paper
states neither. Like DyT it does not normalize (`normalizes = False`).
"""
from dataclasses import dataclass
from typing import Literal

from ..config import ConfigError
from .base import norm_options, register_norm
from .dyt import DyT
from .gated_rmsnorm import add_gate, gated


@register_norm("gated_dyt")
class GatedDyT(DyT):
    """y = g * tanh(a * x) + b; y' = sigmoid(W_up silu(W_down y)) * y, rank r=16, no bias  (Qiu et al. 2026)."""

    @dataclass
    class Options(DyT.Options):
        rank: int = 16
        """rank r of the gate (W_down: d -> r, W_up: r -> d)"""
        init: Literal["torch", "model"] = "torch"
        """gate init: torch = nn.Linear default (Kaiming uniform); model = N(0, model.init_std)"""

        def __post_init__(self):
            super().__post_init__()
            if self.rank < 1:
                raise ConfigError(f"model.norm.options.rank={self.rank} must be >= 1")

    def __init__(self, dim, cfg, role=""):
        super().__init__(dim, cfg, role)
        add_gate(self, dim, norm_options(type(self), cfg))

    def forward(self, x):
        return gated(self, super().forward(x))
