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
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ...config import register_choices
from ...registry import import_all


@dataclass(frozen=True)
class Placement:
    name: str
    slots: tuple[str, ...]            # every slot a block may build (mixln: the union over layers)
    final_norm: bool
    formula: str
    reference: str
    apply: Callable                   # (block, sublayer_name, x) -> x
    setup: Callable | None = None     # (block, cfg) -> slots of this block; adds per-layer state
    init: Callable | None = None      # (model, cfg) after init_weights
    attn: tuple = ()                  # (model.attn option, value) pairs the placement switches on


PLACEMENTS: dict[str, Placement] = {}


def register_placement(name, slots, final_norm, formula, reference, setup=None, init=None, attn=None):
    def wrap(fn):
        if name in PLACEMENTS:
            raise KeyError(f"placement {name!r} is registered twice")
        PLACEMENTS[name] = Placement(name, tuple(slots), final_norm, formula, reference, fn, setup, init,
                                     tuple(sorted((attn or {}).items())))
        return fn
    return wrap


def attention_config(cfg):
    """The model config a block's attention is built from: cfg with its placement's attention options applied."""
    p = PLACEMENTS.get(cfg.norm.placement)
    if p is None or not p.attn:
        return cfg
    return dataclasses.replace(cfg, attn=dataclasses.replace(cfg.attn, **dict(p.attn)))


register_choices("model.norm.placement", lambda: list(PLACEMENTS))


def sublayer(block, sub):
    """The block's attention or MLP module."""
    return getattr(block, sub)


def norm(block, sub, slot):
    """The norm in `slot` ("in", "out", "post") of sublayer `sub` ("attn", "mlp")."""
    return getattr(block, f"norm_{sub}_{slot}")


class Scale(nn.Module):
    """A learned scalar gate a * x (ReZero's residual weight): a module, so stacked training can give each
    member its own a."""

    def __init__(self, init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x


def has_final_norm(cfg) -> bool:
    """The placement's rule unless model.norm.final overrides it (seed 004 keeps ln_f with no norms)."""
    if cfg.norm.final == "auto":
        return PLACEMENTS[cfg.norm.placement].final_norm
    return cfg.norm.final == "always"


import_all(__name__, __path__)  # every module of this folder is one placement
