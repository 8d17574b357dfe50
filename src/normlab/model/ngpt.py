"""nGPT: the normalized transformer, every vector on the unit hypersphere (Loshchilov, Hsieh, Sun,
Ginsburg 2024, arXiv 2410.01131; code as in NVIDIA/ngpt model.py and train.py).

    h ─┬──────────────────────────┐
       └─ F(h) ─ N ─ (−N(h)) ─ ×|α| ─+─ N ─ h'      h' = N( N(h) + |α| ⊙ (N(F(h)) − N(h)) )

for F = attention (α_A) then MLP (α_M); N(x) = x/||x||. No norm layers, no final norm, RoPE only,
SwiGLU with s_uv·sqrt(d) on its pre-activations, untied head with logits scaled by s_z. Every matrix
is renormalized along its d_model axis at build and after every optimizer step (`post_step`).
Deviation: the SwiGLU hidden width follows `model.mlp_ratio` like the GPT here (2/3 of it per
branch); NVIDIA/ngpt uses 4d per branch, i.e. model.mlp_ratio=6.
Shapes: B batch, T time, C d_model, V vocab.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, RunConfig
from .gpt import GPT
from .mha import MultiHeadAttention, ScaledVector, mark_unit_norm, ngpt_base_scale, unit

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "relu2": lambda x: F.relu(x).square()}


def hypersphere_step(h: torch.Tensor, h_sub: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """N(N(h) + |alpha| (N(h_sub) - N(h))): a step of size |alpha| from h toward the sublayer's output."""
    a = unit(h)
    return unit(a + alpha.abs() * (unit(h_sub) - a))


class NGPTMLP(nn.Module):
    """MLP whose pre-activations are scaled by s_uv * sqrt(d_model) (paper eq. 20-21; NVIDIA/ngpt
    scales both u and v by sqrt(d)). Ungated activations scale their single pre-activation alike."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = int(cfg.mlp_ratio * cfg.d_model)
        self.gated = cfg.mlp == "swiglu"
        if self.gated:
            hidden = max(1, int(2 * hidden / 3))
        else:
            self.act = _ACTIVATIONS[cfg.mlp]
        width = 2 * hidden if self.gated else hidden
        self.fc = mark_unit_norm(nn.Linear(cfg.d_model, width, bias=False), 1)   # [u; v] as in c_fc
        self.proj = mark_unit_norm(nn.Linear(hidden, cfg.d_model, bias=False), 0)
        self.s_uv = ScaledVector(width, cfg.ngpt.s_uv_init, 1.0)
        self.sqrt_d = math.sqrt(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        uv = self.fc(x) * (self.s_uv() * self.sqrt_d)
        if self.gated:
            u, v = uv.chunk(2, dim=-1)
            return self.proj(u * F.silu(v))
        return self.proj(self.act(uv))


class NGPTBlock(nn.Module):
    """Hypersphere residual updates: attention (alpha_attn), [cross-attention (alpha_cross),] MLP (alpha_mlp)."""

    def __init__(self, cfg: ModelConfig, causal: bool = True, cross: bool = False):
        super().__init__()
        alpha = lambda: ScaledVector(cfg.d_model, cfg.ngpt.alpha_init, ngpt_base_scale(cfg))  # noqa: E731
        self.attn, self.alpha_attn = MultiHeadAttention(cfg, causal), alpha()
        self.cross = MultiHeadAttention(cfg, causal=False, cross=True) if cross else None
        self.alpha_cross = alpha() if cross else None
        self.mlp, self.alpha_mlp = NGPTMLP(cfg), alpha()

    def forward(self, h, memory=None, memory_pad=None, pad=None):
        h = hypersphere_step(h, self.attn(h, pad=pad), self.alpha_attn())
        if self.cross is not None:
            h = hypersphere_step(h, self.cross(h, memory, memory_pad), self.alpha_cross())
        return hypersphere_step(h, self.mlp(h), self.alpha_mlp())


@torch.no_grad()
def normalize_matrices(model: nn.Module) -> None:
    """Put every tagged weight's vectors on the unit sphere along its d_model axis (in float32)."""
    for module in model.modules():
        dim = getattr(module, "unit_norm_dim", None)
        if dim is not None:
            w = module.weight
            w.copy_(F.normalize(w.float(), dim=dim).to(w.dtype))


def init_ngpt(model: nn.Module, cfg: ModelConfig) -> None:
    """N(0, base_scale) for every matrix (NVIDIA/ngpt), then renormalize: only the directions survive."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, ngpt_base_scale(cfg))
    normalize_matrices(model)


class NGPT(nn.Module):
    """Decoder-only nGPT language model."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size must be set (build_model fills it from the tokenizer)")
        self.cfg = cfg
        self.wte = mark_unit_norm(nn.Embedding(cfg.vocab_size, cfg.d_model), 1)
        self.blocks = nn.ModuleList(NGPTBlock(cfg) for _ in range(cfg.n_layer))
        self.lm_head = mark_unit_norm(nn.Linear(cfg.d_model, cfg.vocab_size, bias=False), 1)
        self.s_z = ScaledVector(cfg.vocab_size, cfg.ngpt.s_z_init, ngpt_base_scale(cfg))
        init_ngpt(self, cfg)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: B, T token ids -> logits B, T, V."""
        if idx.shape[1] > self.cfg.block_size:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds model.block_size={self.cfg.block_size}")
        h = self.wte(idx)  # B,T,C with unit rows: no input norm needed
        for block in self.blocks:
            h = block(h)
        return self.lm_head(h) * self.s_z()

    def post_step(self) -> None:
        normalize_matrices(self)

    num_params = GPT.num_params
    generate = GPT.generate  # the same sampling loop: it only calls self(idx) and reads cfg.block_size


def _ngpt_is_its_own_normalization(cfg: RunConfig) -> str | None:
    m, t = cfg.model, cfg.train
    if m.arch != "ngpt":
        return None
    checks = [
        (m.norm.placement != "none", f"model.arch=ngpt normalizes on the hypersphere and has no norm layers: "
                                     f"set model.norm.placement=none (got {m.norm.placement!r})"),
        (m.norm.final == "always", "model.arch=ngpt has no final norm (its logits are scaled by s_z): "
                                   "model.norm.final must be auto or never"),
        (m.attn.qk_norm, "model.arch=ngpt already normalizes q and k (s_qk * q/|q|): set model.attn.qk_norm=false"),
        (bool(m.attn.logit_clamp or m.attn.logit_softcap or m.out_logit_softcap),
         "model.arch=ngpt bounds its logits by construction (unit q, k and hidden states); logit_clamp, "
         "logit_softcap and out_logit_softcap are not supported with it: set them to 0"),
        (m.pos != "rope", f"model.arch=ngpt uses RoPE only (NVIDIA/ngpt); learned positions would add an "
                          f"unnormalized vector to the unit-norm embeddings: set model.pos=rope (got {m.pos!r})"),
        (m.tie_embeddings, "model.arch=ngpt keeps input and output embeddings separate (both are renormalized "
                           "along d_model): set model.tie_embeddings=false"),
        (m.bias, "model.arch=ngpt has no biases (a bias shifts outputs off the normalized directions): "
                 "set model.bias=false"),
        (m.resid_init_scale != 1.0 or m.depth_scaled_init,
         "model.resid_init_scale / model.depth_scaled_init have no effect with model.arch=ngpt: every matrix "
         "is renormalized at build; leave them at 1.0 / false"),
        (t.weight_decay > 0, f"model.arch=ngpt trains without weight decay (matrices are renormalized after every "
                             f"step, decay would only fight that): set train.weight_decay=0 (got {t.weight_decay})"),
        (t.warmup_steps > 0, f"model.arch=ngpt trains without warmup (NVIDIA/ngpt warmup_iters=0): set "
                             f"train.warmup_steps=0 (got {t.warmup_steps})"),
        (min(m.ngpt.alpha_init, m.ngpt.s_qk_init, m.ngpt.s_uv_init, m.ngpt.s_z_init) <= 0
         or m.ngpt.base_scale < 0, "model.ngpt.*_init must be > 0 and model.ngpt.base_scale >= 0 (0 = 1/sqrt(d))"),
    ]
    reasons = [reason for bad, reason in checks if bad]  # all at once: one round trip to fix them
    return "; and ".join(reasons) or None
