"""QK-Clip (Kimi K2, Kimi Team 2025, arXiv 2507.20534, section 2.1): cap each head's attention logit by
rescaling its query and key weights after the optimizer step.

Per head h, S_h = max over the step's batch of q_i . k_j / sqrt(D) (visible pairs, before any clamp or
cap). If S_h > tau, the rows of W_q and W_k (and their biases) that produce head h are multiplied by
sqrt(tau / S_h) each, so that the same batch would now give S_h = tau exactly (q and k are linear in
those rows; RoPE rotates without changing lengths). Heads at or under tau are untouched. The maxima
are the ones the training forward produced: the attention modules keep them (`record_max_logits`),
which costs one extra q k^T under no_grad on the fused path. Under torchrun the maxima are reduced
with MAX over ranks first, so every replica applies the same factors and the weights stay equal.
The step stays free of host syncs (the comparison and the scaling are device ops).
"""
from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import nn


class QKClip:
    def __init__(self, model: nn.Module, tau: float):
        self.tau = float(tau)
        self.attentions = [m for m in model.modules() if hasattr(m, "record_max_logits")]
        for m in self.attentions:
            m.record_max_logits = True

    def factors(self) -> torch.Tensor | None:
        """sqrt(tau / S) per layer and head where S > tau, else 1 (L, H); None before any forward."""
        maxima = [m.max_logits for m in self.attentions]
        if not maxima or any(s is None for s in maxima):
            return None
        s = torch.stack(maxima)                                                     # L,H (float32 or wider)
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.all_reduce(s, op=torch_dist.ReduceOp.MAX)
        return torch.where(s > self.tau, (self.tau / s).sqrt(), torch.ones_like(s))

    @torch.no_grad()
    def apply(self) -> torch.Tensor | None:
        """Rescale W_q, W_k per head in place; returns the factors (L, H) or None."""
        factors = self.factors()
        if factors is None:
            return None
        for m, f in zip(self.attentions, factors):
            scale_qk_heads(m, f)
            m.max_logits = None  # each step compares its own forward's maxima
        return factors


def scale_qk_heads(attn: nn.Module, factor: torch.Tensor) -> None:
    """Multiply the q rows and the k rows of head h of the fused qkv projection by factor[h] (H,)."""
    C, H = attn.qkv.in_features, attn.n_head
    rows = factor.to(attn.qkv.weight.dtype).repeat_interleave(attn.head_dim)        # C: one factor per q (or k) row
    for t in (attn.qkv.weight, attn.qkv.bias):
        if t is not None:
            t[:C].mul_(rows.view(-1, *([1] * (t.dim() - 1))))                       # q rows
            t[C:2 * C].mul_(rows.view(-1, *([1] * (t.dim() - 1))))                  # k rows
    assert H * attn.head_dim == C
