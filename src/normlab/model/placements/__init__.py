"""PLACEMENTS registry: where a block's norms sit. Each placement is 1-3 lines of residual math.

    pre (GPT-2, Llama)        post (Vaswani 2017)         peri / sandwich         none
    x ─┬─ N ─ F ─┐            x ─┬─ F ─┐                  x ─┬─ N ─ F ─ N ─┐      x ─┬─ F ─┐
       └─────────+─ out          └─────+─ N ─ out            └─────────────+─         └─────+─ out
    final N before head       no final N                  final N                 no final N

    deepnorm (DeepNet 2022)   mixln (Li et al. 2024)                 rezero (Bachlechner 2020)
    x ─┬──── F ────┐          blocks 0 .. floor(frac*L)-1: post      x ─┬─ F ─ ×a ─┐
       └─ ×α ──────+─ N ─ out  blocks floor(frac*L) .. L-1:  pre        └───────────+─ out
    α = (2L)^¼; init of v,    final N                                a scalar per block, init 0,
    out-proj, MLP ×(8L)^-¼                                           shared by attn and MLP; no N
    no final N

    reorder (OLMo 2)          lns (LayerNorm Scaling)     hybrid (HybridNorm)
    x ─┬─ F ─ N ─┐            x ─┬─ N ─ ×1/√ℓ ─ F ─┐      x ─┬─ Attn(N q, N k, N v) ─┐
       └─────────+─ out          └─────────────────+─        └───────────────────────+─ N ─┬─ MLP ─┐
    final N                   ℓ = layer index from 1;                                      └───────+─ out
                              final N                    final N; HybridNorm*: block 0 pre-norm

One placement per file in this folder (every module is imported: the file is the registration).
A placement names the norm slots it needs per sublayer ("in": on the sublayer input, "out": on
the sublayer output, "post": on the residual sum) and whether the model ends with a final norm.
Norm kind is a separate axis: the block builds each slot with `build_norm(cfg.norm, ...)`.
Two optional hooks keep the residual math short: `setup(block, cfg) -> slots` gives a block its
per-layer state (deepnorm's α, mixln's pre/post choice, rezero's gate) and the slots that block
builds; `init(model, cfg)` runs after the normal weight init (deepnorm's β). A placement that needs
attention internals switches the attention's own options (`attn`, e.g. hybrid's qkv_norm) instead of
reaching into attention code: `attention_config(cfg)` is the model config the block's attention is built from.
"""
from ...registry import import_all
from .base import (PLACEMENTS, Placement, Scale, attention_config, has_final_norm, norm, register_placement,
                   sublayer)

import_all(__name__, __path__, skip=("base",))  # every other module of this folder is one placement

__all__ = ["PLACEMENTS", "Placement", "Scale", "attention_config", "has_final_norm", "norm", "register_placement",
           "sublayer"]
