"""Rotary position embedding (Su et al. 2021, arXiv 2104.09864), rotate-half convention (GPT-NeoX/Llama)."""
from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)  # T, D/2
        angles = torch.cat([angles, angles], dim=-1)  # T, D
        # Buffers are not persistent: they are a pure function of the config, not learned state.
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x: B, H, T, D -> same, each position t rotated by t * inv_freq."""
        t = x.shape[-2]
        cos = self.cos[offset:offset + t].to(x.dtype)
        sin = self.sin[offset:offset + t].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin
