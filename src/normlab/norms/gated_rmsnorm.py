"""gated_rmsnorm: GatedNorm (Qiu et al. 2026, Qwen team, arXiv 2601.22966, section 3.4).

y = RMSNorm(x) (with its gain), then an element-wise low-rank sigmoid self-gate on y:
y' = sigmoid(W_up silu(W_down y)) * y, W_down: d -> r, W_up: r -> d, no bias, r = 16 by default
(`model.norm.options.rank`). The gate input is the norm's output, as in the paper's notation and
in kubotadaichi/gated-norm-experiment.

Init is not stated in the paper (UNVERIFIED). Default `init: torch` keeps nn.Linear's own
Kaiming-uniform init, U(+-1/sqrt(fan_in)), as the reimplementation does: at init the gate is
about sigmoid(0) = 0.5, so the output is roughly halved. `init: model` instead draws both gate
matrices from N(0, model.init_std) like every other linear layer.
"""
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from .base import norm_options, register_norm
from .rmsnorm import rms_normalize


@register_norm("gated_rmsnorm")
class GatedRMSNorm(nn.Module):
    """y = g*x/rms(x); y' = sigmoid(W_up silu(W_down y)) * y, rank r=16, no bias  (Qiu et al. 2026, sec. 3.4)."""

    @dataclass
    class Options:
        rank: int = 16
        """rank r of the gate (W_down: d -> r, W_up: r -> d)"""
        init: Literal["torch", "model"] = "torch"
        """gate init: torch = nn.Linear default (Kaiming uniform); model = N(0, model.init_std)"""

        def __post_init__(self):
            if self.rank < 1:
                raise ConfigError(f"model.norm.options.rank={self.rank} must be >= 1")

    def __init__(self, dim, cfg, role=""):
        super().__init__()
        opts = norm_options(type(self), cfg)
        self.eps = cfg.eps
        self.weight = nn.Parameter(torch.ones(dim)) if cfg.affine else None
        add_gate(self, dim, opts)

    def forward(self, x):
        return gated(self, rms_normalize(x, self.eps, self.weight))


def add_gate(norm: nn.Module, dim: int, opts) -> None:
    """The low-rank gate's two plain nn.Linear children, gate_down (d -> r) and gate_up (r -> d), no bias."""
    norm.gate_down = nn.Linear(dim, opts.rank, bias=False)
    norm.gate_up = nn.Linear(opts.rank, dim, bias=False)
    # model/init.py re-initialises every nn.Linear unless it is told to keep the module's own init.
    norm.gate_down.keeps_own_init = norm.gate_up.keeps_own_init = opts.init == "torch"


def gated(norm: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """sigmoid(W_up silu(W_down y)) * y: the element-wise self-gate on a norm's output."""
    return torch.sigmoid(norm.gate_up(F.silu(norm.gate_down(y)))) * y
