"""Causal self-attention (and cross-attention) through F.scaled_dot_product_attention.

Shapes: B batch, T query time, S key time, C d_model, H heads, D head dim.
`probabilities(q, k)` is the one place the attention weights are defined (scale, causal mask,
clamp / soft-cap, softmax / softpick / sigmoid / relu, sink): the explicit path multiplies them with v, the
probes call it on the tapped q and k, so what is probed is what the model computes. The fused SDPA
kernel runs whenever it can express the variant: plain softmax with no clamp or cap, and the sink
too (a zero key and zero value appended, the sink logit as that column of a float attn_mask);
softpick, sigmoid, relu, clamp and soft-cap take the explicit path. SDPA runs through `sdpa.sdpa` (float32 for bf16 on the CPU). `tap_q` / `tap_k` / `tap_v` are
nn.Identity tap points (after RoPE and the q/k/v norms) so probes read them without editing the model.
Options (model.attn): qk_norm / qkv_norm / qk_scale (the kappa transplant), an output gate, the weight function,
a sink; QK-Clip
(training/qk_clip.py) turns on `record_max_logits`, and the forward keeps `max_logits` (H).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, NormConfig
from ..norms import build_norm
from .rope import Rotary
from .sdpa import sdpa

SOFTPICK_EPS = 1e-8  # softpick's epsilon in its denominator (Zuhri et al. 2025); only matters for all-zero rows


def attention_logits_transform(scores: torch.Tensor, clamp: float, softcap: float) -> torch.Tensor:
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    if clamp:
        scores = scores.clamp(-clamp, clamp)
    return scores


def softpick(z: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """relu(e^z - 1) / (sum over visible keys of |e^z - 1| + eps) (Zuhri, Fuadi, Aji 2025, arXiv 2504.20966).

    Numerator and denominator are both multiplied by e^-m, m = max(row max, 0) (detached: the value
    does not depend on m), so every exponential is <= 1: no overflow for large logits, and for rows
    whose logits are all very negative e^-m stays 1 instead of overflowing. Hidden keys count nothing.
    """
    z = z.masked_fill(hidden, float("-inf"))
    m = z.amax(-1, keepdim=True).clamp(min=0).detach()
    shifted = torch.exp(z - m) - torch.exp(-m)                       # (e^z - 1) e^-m; hidden keys: -e^-m
    den = shifted.abs().masked_fill(hidden, 0).sum(-1, keepdim=True) + SOFTPICK_EPS * torch.exp(-m)
    return F.relu(shifted) / den


def sigmoid_weights(z: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """sigmoid(z - log n) with n the keys the row sees (Ramapuram et al. 2024, arXiv 2409.04431, b = -log n)."""
    n_visible = (~hidden).sum(-1, keepdim=True).clamp(min=1).to(z.dtype)
    return torch.sigmoid(z - torch.log(n_visible)).masked_fill(hidden, 0.0)


def relu_weights(z: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """relu(z) / n with n the keys the row sees: ReLU attention without normalization (Guo et al. 2024, arXiv
    2410.13835, sec. 5: "softmax -> ReLU" removes the sinks; the 1/n scale as in Wortsman et al. 2023, arXiv
    2309.08586, keeps the output's size independent of the length). Rows need not sum to 1 and may be 0."""
    n_visible = (~hidden).sum(-1, keepdim=True).clamp(min=1).to(z.dtype)
    return (F.relu(z) / n_visible).masked_fill(hidden, 0.0)


class SinkLogit(nn.Module):
    """One learned logit per head in the softmax denominator (gpt-oss sinks), init 0 as in x-transformers'
    head_learned_sink; a leaf module so stacked training can give each member its own.

    forward(zeros) takes a B,H tensor of zeros and returns each row's sink logits (B,H): the batch axis lets a
    stack of models (training/stacked.py, rows grouped by member) add each member's own logits."""

    def __init__(self, n_head: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_head))

    def forward(self, zeros: torch.Tensor) -> torch.Tensor:
        return zeros + self.weight.to(zeros.dtype)


class FixedScale(nn.Module):
    """z -> sqrt(kappa) * z / rms(z) over the head dim, no parameters: Wortsman et al. 2023 (arXiv 2309.14322,
    Fig. 10) force q and k to E[z^2] = kappa this way to transplant a large attention-logit scale into a small
    model; the logits q.k/sqrt(D) then scale with kappa. eps inside the root as in RMSNorm."""

    def __init__(self, kappa: float, eps: float):
        super().__init__()
        self.root_kappa, self.eps = math.sqrt(kappa), eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        zf = z.to(torch.promote_types(z.dtype, torch.float32))
        return (self.root_kappa * zf * torch.rsqrt(zf.pow(2).mean(-1, keepdim=True) + self.eps)).to(z.dtype)


def qkv_norms(cfg: ModelConfig, head_dim: int) -> tuple:
    """(norm_q, norm_k, norm_v) per head: qkv_norm uses the model's norm kind, qk_norm an RMSNorm on q and k,
    qk_scale the parameter-free FixedScale on q and k."""
    a = cfg.attn
    if a.qk_scale:
        return FixedScale(a.qk_scale, cfg.norm.eps), FixedScale(a.qk_scale, cfg.norm.eps), None
    if a.qkv_norm:
        return tuple(build_norm(cfg.norm, head_dim, role) for role in ("q", "k", "v"))
    if a.qk_norm:
        qk_cfg = NormConfig(kind="rmsnorm", eps=cfg.norm.eps)
        return build_norm(qk_cfg, head_dim, "q"), build_norm(qk_cfg, head_dim, "k"), None
    return None, None, None


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        a = cfg.attn
        self.n_head, self.head_dim, self.causal = cfg.n_head, cfg.d_model // cfg.n_head, True
        self.clamp, self.softcap, self.weights = a.logit_clamp, a.logit_softcap, a.softmax
        self.fused = a.softmax == "softmax" and not (a.logit_clamp or a.logit_softcap)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.proj.is_residual_proj = True
        self.rotary = Rotary(self.head_dim, cfg.block_size, cfg.rope_base) if cfg.pos == "rope" else None
        self.norm_q, self.norm_k, self.norm_v = qkv_norms(cfg, self.head_dim)
        # Qiu et al. 2025 (arXiv 2505.06708): gate on the SDPA output from the attention's input x, W_g: C -> H or C
        self.gate = None if a.gate == "none" else nn.Linear(
            cfg.d_model, cfg.n_head if a.gate == "headwise" else cfg.d_model, bias=False)
        self.sink = SinkLogit(cfg.n_head) if a.sink else None
        self.tap_q, self.tap_k, self.tap_v = nn.Identity(), nn.Identity(), nn.Identity()
        self.record_max_logits, self.max_logits = False, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # B,H,T,D
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        if self.norm_v is not None:
            v = self.norm_v(v)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        q, k, v = self.tap_q(q), self.tap_k(k), self.tap_v(v)
        y = self._attend(q, k, v)                                                           # B,H,T,D
        if self.gate is not None:
            y = y * torch.sigmoid(self.gate(x)).view(B, T, self.n_head, -1).transpose(1, 2)  # B,H,T,1 or D
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def _attend(self, q, k, v):
        if not self.fused:
            probs, scores = self.probabilities(q, k)
            self._keep_max_logits(scores)
            return probs.to(q.dtype) @ v
        if self.record_max_logits:
            with torch.no_grad():
                scores, hidden = self._scores(q, k)
                self._keep_max_logits(scores.masked_fill(hidden, float("-inf")))
        if self.sink is None:
            return sdpa(q, k, v, is_causal=True)
        return self._sdpa_with_sink(q, k, v)

    def _sdpa_with_sink(self, q, k, v):
        """softmax over [q.k/sqrt(D), sink_h] with the sink's column dropped, in SDPA: a zero key (logit 0) whose
        attn_mask entry is the sink logit, and a zero value, so the extra column only adds to the denominator."""
        B, H, T, D = q.shape
        S = k.shape[-2]
        zeros = k.new_zeros(B, H, 1, D)
        hidden = ~torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        causal = torch.zeros(T, S, dtype=q.dtype, device=q.device).masked_fill(hidden, float("-inf"))
        sink = self.sink(q.new_zeros(B, H)).view(B, H, 1, 1).expand(B, H, T, 1)
        mask = torch.cat([causal.expand(B, H, T, S), sink], dim=-1)                     # B,H,T,S+1
        return sdpa(q, torch.cat([k, zeros], -2), torch.cat([v, zeros], -2), attn_mask=mask)

    def _scores(self, q, k):
        """(raw logits q.k/sqrt(D) in float32 or wider, B,H,T,S; the hidden (future) keys, T,S)."""
        dtype = torch.promote_types(q.dtype, torch.float32)
        scores = (q.to(dtype) @ k.to(dtype).transpose(-2, -1)) / math.sqrt(self.head_dim)  # B,H,T,S
        T, S = scores.shape[-2:]
        return scores, ~torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)

    def _keep_max_logits(self, scores):
        """Per head, the largest visible logit over the batch (what QK-Clip compares with its threshold)."""
        if self.record_max_logits:
            self.max_logits = scores.detach().amax(dim=(0, 2, 3))  # H; hidden entries are -inf

    def probabilities(self, q: torch.Tensor, k: torch.Tensor, pad=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention weights B,H,T,S in float32 or wider, raw logits q.k/sqrt(D) before clamp/cap, masked -inf).

        softmax rows sum to 1; with a sink, softmax over [logits, sink_h] without the sink's column (rows sum
        to less than 1); softpick rows sum to at most 1 and may be all 0; sigmoid rows are unnormalized."""
        scores, hidden = self._scores(q, k)
        z = attention_logits_transform(scores, self.clamp, self.softcap)
        if self.weights == "softpick":
            probs = softpick(z, hidden)
        elif self.weights == "sigmoid":
            probs = sigmoid_weights(z, hidden)
        elif self.weights == "relu":
            probs = relu_weights(z, hidden)
        elif self.sink is not None:
            B, H, T, _ = z.shape
            sink = self.sink(z.new_zeros(B, H)).view(B, H, 1, 1).expand(B, H, T, 1)
            probs = torch.softmax(torch.cat([z.masked_fill(hidden, float("-inf")), sink], -1), dim=-1)[..., :-1]
        else:
            probs = torch.softmax(z.masked_fill(hidden, float("-inf")), dim=-1)
        return probs, scores.masked_fill(hidden, float("-inf"))
