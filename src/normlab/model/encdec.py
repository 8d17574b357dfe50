"""Encoder-decoder transformer (seed 002, "TnT"): bidirectional encoder, causal decoder with
cross-attention, RoPE, GELU MLP, shared token embedding, untied head; normal or nGPT mode.

    normal (Pre-Norm, model.arch=gpt)                 nGPT (model.arch=ngpt)
    enc: x + A(N x); x + M(N x); final N = memory    enc: h <- N(h + |a_A|(N A(h) - h)); same for M
    dec: x + A(N x); x + X(N x, memory); x + M(N x)  dec: the same steps for A, X (cross, a_C) and M
         final N, head                                    head * s_z; matrices renormalized after each step

A source row is [BOS] chars [BOS], padded with IGNORE (masked out of every attention over it); the
decoder reads [BOS] target and predicts target [BOS]. Shapes: B batch, T target time, S source time.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig, RunConfig
from ..data import IGNORE, source_ids
from ..norms import build_norm
from .gpt import GPT
from .init import init_weights
from .mha import MultiHeadAttention, ScaledVector, mark_unit_norm, ngpt_base_scale
from .mlp import MLP
from .ngpt import NGPTBlock, init_ngpt, normalize_matrices


class PreNormBlock(nn.Module):
    """x + Attn(N(x)); [x + Cross(N(x), memory);] x + MLP(N(x))."""

    def __init__(self, cfg: ModelConfig, causal: bool = True, cross: bool = False):
        super().__init__()
        self.norm_attn_in, self.attn = build_norm(cfg.norm, cfg.d_model, "attn_in"), MultiHeadAttention(cfg, causal)
        self.cross = MultiHeadAttention(cfg, causal=False, cross=True) if cross else None
        self.norm_cross_in = build_norm(cfg.norm, cfg.d_model, "attn_in") if cross else None
        self.norm_mlp_in, self.mlp = build_norm(cfg.norm, cfg.d_model, "mlp_in"), MLP(cfg)

    def forward(self, x, memory=None, memory_pad=None, pad=None):
        x = x + self.attn(self.norm_attn_in(x), pad=pad)
        if self.cross is not None:
            x = x + self.cross(self.norm_cross_in(x), memory, memory_pad)
        return x + self.mlp(self.norm_mlp_in(x))


class EncoderDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size must be set (build_model fills it from the tokenizer)")
        self.cfg, self.ngpt = cfg, cfg.arch == "ngpt"
        block = NGPTBlock if self.ngpt else PreNormBlock
        self.wte = mark_unit_norm(nn.Embedding(cfg.vocab_size, cfg.d_model), 1)
        self.encoder = nn.ModuleList(block(cfg, causal=False) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(block(cfg, causal=True, cross=True) for _ in range(cfg.n_layer))
        self.lm_head = mark_unit_norm(nn.Linear(cfg.d_model, cfg.vocab_size, bias=False), 1)
        if self.ngpt:
            self.s_z = ScaledVector(cfg.vocab_size, cfg.ngpt.s_z_init, ngpt_base_scale(cfg))
            init_ngpt(self, cfg)
        else:
            self.norm_enc = build_norm(cfg.norm, cfg.d_model, "final")
            self.norm_final = build_norm(cfg.norm, cfg.d_model, "final")
            init_weights(self, cfg)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src: B,S ids (IGNORE = padding) -> memory B,S,C and its padding mask B,S."""
        self._check_length(src)
        pad = src == IGNORE
        h = self.wte(src.clamp_min(0))
        for block in self.encoder:
            h = block(h, pad=pad)
        return (h if self.ngpt else self.norm_enc(h)), pad

    def decode(self, idx: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        """idx: B,T decoder input ids -> logits B,T,V."""
        self._check_length(idx)
        h = self.wte(idx)
        for block in self.decoder:
            h = block(h, memory, memory_pad)
        if self.ngpt:
            return self.lm_head(h) * self.s_z()
        return self.lm_head(self.norm_final(h))

    def forward(self, idx: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        memory, pad = self.encode(src)
        return self.decode(idx, memory, pad)

    def post_step(self) -> None:
        if self.ngpt:
            normalize_matrices(self)

    def _check_length(self, ids: torch.Tensor) -> None:
        if ids.shape[1] > self.cfg.block_size:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds model.block_size={self.cfg.block_size}")

    num_params = GPT.num_params


@torch.no_grad()
def greedy_decode(model: EncoderDecoder, src: torch.Tensor, bos: int, max_length: int) -> list[list[int]]:
    """Argmax decoding of a batch of sources; each output stops before its first BOS."""
    memory, pad = model.encode(src)
    idx = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(min(max_length, model.cfg.block_size - 1)):
        nxt = model.decode(idx, memory, pad)[:, -1].argmax(-1)
        idx = torch.cat([idx, nxt[:, None]], dim=1)
        done |= nxt == bos
        if bool(done.all()):
            break
    out = []
    for row in idx[:, 1:].tolist():
        out.append(row[: row.index(bos)] if bos in row else row)
    return out


def inference(model: EncoderDecoder, tokenizer, text: str, max_length: int = 64) -> str:
    """The model's (greedy) output string for one input string, e.g. 'anna' -> 'anna' reversed."""
    ids = source_ids(tokenizer, text)
    if len(ids) > model.cfg.block_size:
        raise ValueError(f"input {text!r} has {len(text)} characters; this model reads at most "
                         f"{model.cfg.block_size - 2} (model.block_size - 2)")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = greedy_decode(model, torch.tensor([ids], device=device), tokenizer.bos, max_length)[0]
    model.train(was_training)
    return tokenizer.decode(out)


def _encdec_needs_seq2seq(cfg: RunConfig) -> str | None:
    m, task = cfg.model, cfg.data.task
    if m.encoder_layers < 0:
        return f"model.encoder_layers={m.encoder_layers} must be >= 0 (0 = decoder-only)"
    if task != "lm" and m.encoder_layers == 0:
        return (f"data.task={task} is a seq2seq task: it needs an encoder-decoder, set model.encoder_layers > 0 "
                "(e.g. model.encoder_layers=2)")
    if m.encoder_layers == 0:
        return None
    if task == "lm":
        return ("model.encoder_layers > 0 builds an encoder-decoder, which needs a seq2seq data.task "
                "(reverse or sort), not lm")
    if m.arch == "gpt" and m.norm.placement != "pre":
        return (f"the encoder-decoder's normal mode is Pre-Norm (seed 002: RMSNorm before each sublayer): "
                f"model.norm.placement must be pre (got {m.norm.placement!r}), or use model.arch=ngpt")
    if m.pos != "rope":
        return f"the encoder-decoder uses RoPE (seed 002): set model.pos=rope (got {m.pos!r})"
    if m.attn.qk_norm or m.attn.logit_clamp or m.attn.logit_softcap or m.out_logit_softcap or m.tie_embeddings:
        return ("the encoder-decoder supports none of model.attn.qk_norm / logit_clamp / logit_softcap, "
                "model.out_logit_softcap or model.tie_embeddings (its head is untied): leave them off")
    if m.block_size < 4:
        return f"model.block_size={m.block_size} is too short for a seq2seq row ([BOS] text [BOS]); use >= 4"
    return None
