"""Multi-head attention for nGPT and the encoder-decoder: self or cross, causal or bidirectional.

Shapes: B batch, T query time, S key time, C d_model, H heads, D head dim.
Standard mode is softmax(q k^T / sqrt(D)) v. nGPT mode (Loshchilov et al. 2024, arXiv 2410.01131,
eq. 15-16; NVIDIA/ngpt model.py) normalizes q and k per head after RoPE, scales them by the learned
s_qk and uses softmax scale +sqrt(D), since q.k of unit vectors lies in [-1, 1].
RoPE rotates self-attention only: in cross-attention, query and key positions index different
sequences, so their difference means nothing (the encoder's output already carries its positions).
`pad` marks key positions to ignore (source padding); `tap_q` / `tap_k` are probe tap points.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .rope import Rotary
from .sdpa import sdpa


def unit(x: torch.Tensor) -> torch.Tensor:
    """x / ||x||_2 over the last dim. NVIDIA/ngpt divides by the norm with no eps; F.normalize's
    eps (1e-12, on the norm) only differs for an all-zero vector, where the official code gives NaN."""
    return F.normalize(x, dim=-1)


def ngpt_base_scale(cfg: ModelConfig) -> float:
    return cfg.ngpt.base_scale or 1.0 / math.sqrt(cfg.d_model)


class ScaledVector(nn.Module):
    """A learned vector stored at `init_scaling` and used as p * (init_value / init_scaling).

    NVIDIA/ngpt's trick for alpha, s_qk, s_uv, s_z: Adam's step is about lr in the stored units,
    so the step on the used value is lr * init_value / init_scaling (an "eigen learning rate").
    """

    def __init__(self, n: int, init_value: float, init_scaling: float):
        super().__init__()
        self.init_value, self.init_scaling = float(init_value), float(init_scaling)
        self.weight = nn.Parameter(torch.full((n,), self.init_scaling))

    def forward(self) -> torch.Tensor:
        return self.weight * (self.init_value / self.init_scaling)


def mark_unit_norm(linear: nn.Module, dim: int) -> nn.Module:
    """Tag a weight for nGPT's renormalization: `dim` is the axis of length d_model."""
    linear.unit_norm_dim = dim
    return linear


class MultiHeadAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, causal: bool, cross: bool = False):
        super().__init__()
        C = cfg.d_model
        self.n_head, self.head_dim, self.causal = cfg.n_head, C // cfg.n_head, causal
        self.q = mark_unit_norm(nn.Linear(C, C, bias=cfg.bias), 1)        # reads the residual: rows
        self.kv = mark_unit_norm(nn.Linear(C, 2 * C, bias=cfg.bias), 1)
        self.proj = mark_unit_norm(nn.Linear(C, C, bias=cfg.bias), 0)     # writes the residual: columns
        self.proj.is_residual_proj = True
        self.rotary = None if cross else Rotary(self.head_dim, cfg.block_size, cfg.rope_base)
        self.normalized = cfg.arch == "ngpt"
        if self.normalized:
            self.s_qk = ScaledVector(C, cfg.ngpt.s_qk_init, ngpt_base_scale(cfg))
        self.tap_q, self.tap_k, self.tap_pad = nn.Identity(), nn.Identity(), nn.Identity()

    @property
    def scale(self) -> float:
        """nGPT's softmax scale is +sqrt(D) (q.k of unit vectors lies in [-1, 1]); otherwise 1/sqrt(D)."""
        return math.sqrt(self.head_dim) if self.normalized else 1.0 / math.sqrt(self.head_dim)

    def probabilities(self, q: torch.Tensor, k: torch.Tensor, pad: torch.Tensor | None = None):
        """(attention weights B,H,T,S, logits q.k*scale with masked entries -inf), as forward computes them:
        the model's own scale, its causal mask only if it is causal, and key padding (pad: B,S, True = ignore)."""
        dtype = torch.promote_types(q.dtype, torch.float32)
        scores = (q.to(dtype) @ k.to(dtype).transpose(-2, -1)) * self.scale  # B,H,T,S
        if self.causal:
            T, S = scores.shape[-2:]
            scores = scores.masked_fill(~torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T),
                                        float("-inf"))
        if pad is not None:
            scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
        return torch.softmax(scores, dim=-1), scores

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                pad: torch.Tensor | None = None) -> torch.Tensor:
        """x: B,T,C queries; memory: B,S,C keys/values (None = x); pad: B,S bool, True = ignore."""
        B, T, C = x.shape
        src = x if memory is None else memory
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)             # B,H,T,D
        k, v = (t.view(B, src.shape[1], self.n_head, self.head_dim).transpose(1, 2)       # B,H,S,D
                for t in self.kv(src).split(C, dim=-1))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        scale = None
        if self.normalized:
            s_qk = self.s_qk().view(1, self.n_head, 1, self.head_dim)
            q, k = s_qk * unit(q), s_qk * unit(k)
            scale = math.sqrt(self.head_dim)
        q, k = self.tap_q(q), self.tap_k(k)
        if pad is not None and self.causal:
            raise ValueError("a causal attention takes no key padding mask (padding sits after the content)")
        if pad is not None:
            pad = self.tap_pad(pad)
        mask = None if pad is None else ~pad[:, None, None, :]                            # B,1,1,S
        y = sdpa(q, k, v, attn_mask=mask, is_causal=self.causal, scale=scale)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))
