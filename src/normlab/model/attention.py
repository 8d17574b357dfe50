"""Causal self-attention (and cross-attention) through F.scaled_dot_product_attention.

Shapes: B batch, T query time, S key time, C d_model, H heads, D head dim.
Logit clamp / soft-cap need the logits, which the fused kernel never materializes: with either on
we compute softmax(q k^T) explicitly; with both off the fused path is used.
`tap_q` / `tap_k` are nn.Identity tap points so probes can read q and k (after RoPE and QK-norm)
without editing the model; `probabilities(q, k)` is the one place the attention weights are
defined (scale, causal mask, clamp / soft-cap): the explicit path multiplies them with v, and the
probes call it on the tapped q and k, so what is probed is what the model computes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, NormConfig
from ..norms import build_norm
from .rope import Rotary


def attention_logits_transform(scores: torch.Tensor, clamp: float, softcap: float) -> torch.Tensor:
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    if clamp:
        scores = scores.clamp(-clamp, clamp)
    return scores


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.head_dim, self.causal = cfg.n_head, cfg.d_model // cfg.n_head, True
        self.clamp, self.softcap = cfg.attn.logit_clamp, cfg.attn.logit_softcap
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.proj.is_residual_proj = True
        self.rotary = Rotary(self.head_dim, cfg.block_size, cfg.rope_base) if cfg.pos == "rope" else None
        if cfg.attn.qk_norm:
            qk_cfg = NormConfig(kind="rmsnorm", eps=cfg.norm.eps)
            self.norm_q = build_norm(qk_cfg, self.head_dim, "q")
            self.norm_k = build_norm(qk_cfg, self.head_dim, "k")
        else:
            self.norm_q = self.norm_k = None
        self.tap_q, self.tap_k = nn.Identity(), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # B,H,T,D
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        q, k = self.tap_q(q), self.tap_k(k)
        if self.clamp or self.softcap:
            y = self._explicit(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def _explicit(self, q, k, v):
        return self.probabilities(q, k)[0].to(q.dtype) @ v

    def probabilities(self, q: torch.Tensor, k: torch.Tensor, pad=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention weights B,H,T,S in float32 or wider, raw logits q.k/sqrt(D) before clamp/cap, masked -inf)."""
        dtype = torch.promote_types(q.dtype, torch.float32)
        scores = (q.to(dtype) @ k.to(dtype).transpose(-2, -1)) / math.sqrt(self.head_dim)  # B,H,T,S
        T, S = scores.shape[-2:]
        hidden = ~torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        logits = attention_logits_transform(scores, self.clamp, self.softcap).masked_fill(hidden, float("-inf"))
        return torch.softmax(logits, dim=-1), scores.masked_fill(hidden, float("-inf"))
