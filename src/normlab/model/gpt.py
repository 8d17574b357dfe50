"""Decoder-only GPT whose norms are chosen by two registries: norm kind x placement.

Shapes: B batch, T time, C d_model, V vocab. No training, probing or I/O code lives here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..norms import build_norm
from .attention import SelfAttention
from .init import init_weights
from .mlp import MLP
from .placements import PLACEMENTS, attention_config, has_final_norm

SUBLAYERS = ("attn", "mlp")


class Block(nn.Module):
    """One transformer block; `placement.apply` holds its residual arithmetic."""

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx, self.n_layer = layer_idx, cfg.n_layer
        self.placement = PLACEMENTS[cfg.norm.placement]
        self.attn = SelfAttention(attention_config(cfg))  # a placement may switch attention options (hybrid)
        self.mlp = MLP(cfg)
        setup = self.placement.setup
        slots = setup(self, cfg) if setup else self.placement.slots  # per-layer state, e.g. mixln's choice
        for sub in SUBLAYERS:
            for slot in slots:
                setattr(self, f"norm_{sub}_{slot}", build_norm(cfg.norm, cfg.d_model, f"{sub}_{slot}"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.placement.apply(self, "attn", x)
        x = self.placement.apply(self, "mlp", x)
        return x


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size must be set (build_model fills it from the tokenizer)")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model) if cfg.pos == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm_final = build_norm(cfg.norm, cfg.d_model, "final") if has_final_norm(cfg) else None
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        init_weights(self, cfg)
        placement = PLACEMENTS[cfg.norm.placement]
        if placement.init is not None:
            placement.init(self, cfg)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: B, T token ids -> logits B, T, V."""
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds model.block_size={self.cfg.block_size}")
        x = self.wte(idx)  # B,T,C
        if self.wpe is not None:  # positions per row (not one [T] row): a stacked run's wpe is per member
            x = x + self.wpe(torch.arange(T, device=idx.device).expand(idx.shape[0], T))
        for block in self.blocks:
            x = block(x)
            if self.cfg.resid_clip:  # Qiu et al. 2026: the residual stream clipped to [-c, c] after every block
                x = x.clamp(-self.cfg.resid_clip, self.cfg.resid_clip)
        if self.norm_final is not None:
            x = self.norm_final(x)
        logits = self.lm_head(x)  # B,T,V
        cap = self.cfg.out_logit_softcap
        return cap * torch.tanh(logits / cap) if cap else logits

    def num_params(self) -> int:
        """Every parameter once (a tied head is counted with the embedding)."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None, stop_token: int | None = None) -> torch.Tensor:
        """Sample continuations of idx (B, T), all rows at once; stops early once every row has produced
        stop_token (rows are cut there by the caller)."""
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.cfg.block_size:])[:, -1, :].float()
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
            if stop_token is not None:
                done |= nxt[:, 0] == stop_token
                if bool(done.all()):
                    break
        return idx
