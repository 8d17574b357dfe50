"""Position-wise MLP: relu, gelu, relu2 (squared ReLU, So et al. 2021) or swiglu (Shazeer 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "relu2": lambda x: F.relu(x).square()}


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = int(cfg.mlp_ratio * cfg.d_model)
        self.gated = cfg.mlp == "swiglu"
        if self.gated:
            hidden = max(1, int(2 * hidden / 3))  # keeps the parameter count of the ungated MLP
            self.gate = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        else:
            self.act = _ACTIVATIONS[cfg.mlp]
        self.fc = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        self.proj = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.proj.is_residual_proj = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.gate(x)) * self.fc(x) if self.gated else self.act(self.fc(x))
        return self.proj(h)
