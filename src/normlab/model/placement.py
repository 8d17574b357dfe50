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

A placement names the norm slots it needs per sublayer ("in": on the sublayer input, "out": on
the sublayer output, "post": on the residual sum) and whether the model ends with a final norm.
Norm kind is a separate axis: the block builds each slot with `build_norm(cfg.norm, ...)`.
Two optional hooks keep the residual math short: `setup(block, cfg) -> slots` gives a block its
per-layer state (deepnorm's α, mixln's pre/post choice, rezero's gate) and the slots that block
builds; `init(model, cfg)` runs after the normal weight init (deepnorm's β).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import register_choices


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


PLACEMENTS: dict[str, Placement] = {}


def register_placement(name, slots, final_norm, formula, reference, setup=None, init=None):
    def wrap(fn):
        if name in PLACEMENTS:
            raise KeyError(f"placement {name!r} is registered twice")
        PLACEMENTS[name] = Placement(name, tuple(slots), final_norm, formula, reference, fn, setup, init)
        return fn
    return wrap


register_choices("model.norm.placement", lambda: list(PLACEMENTS))


def _f(block, sub):
    return getattr(block, sub)


def _n(block, sub, slot):
    return getattr(block, f"norm_{sub}_{slot}")


@register_placement("pre", ["in"], True, "x + F(N(x)); final N", "Xiong et al. 2020, arXiv 2002.04745")
def _pre(block, sub, x: torch.Tensor) -> torch.Tensor:
    return x + _f(block, sub)(_n(block, sub, "in")(x))


@register_placement("post", ["post"], False, "N(x + F(x)); no final N", "Vaswani et al. 2017, arXiv 1706.03762")
def _post(block, sub, x):
    return _n(block, sub, "post")(x + _f(block, sub)(x))


@register_placement("peri", ["in", "out"], True, "x + N_out(F(N_in(x))); final N",
                    "Kim et al. 2025 (Peri-LN), arXiv 2502.02732; = Sandwich-LN (Ding et al. 2021)")
def _peri(block, sub, x):
    return x + _n(block, sub, "out")(_f(block, sub)(_n(block, sub, "in")(x)))


def deepnorm_constants(n_layer: int) -> tuple[float, float]:
    """(α, β) of decoder-only DeepNorm: α = (2N)^¼ on the residual, β = (8N)^-¼ on the init."""
    return (2 * n_layer) ** 0.25, (8 * n_layer) ** -0.25


def _deepnorm_setup(block, cfg):
    block.residual_alpha = deepnorm_constants(cfg.n_layer)[0]
    return ("post",)


@torch.no_grad()
def _deepnorm_init(model, cfg):
    # torchscale decoder.py divides fc1, fc2, out_proj and v_proj (never q, k) by (8N)^¼ after init.
    beta = deepnorm_constants(cfg.n_layer)[1]
    for block in model.blocks:
        block.attn.qkv.weight[2 * cfg.d_model:].mul_(beta)  # rows of the fused q|k|v linear: v only
        block.attn.proj.weight.mul_(beta)
        for layer in block.mlp.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(beta)


@register_placement("deepnorm", ["post"], False, "N(α·x + F(x)), α=(2L)^¼; init β=(8L)^-¼; no final N",
                    "Wang et al. 2022 (DeepNet), arXiv 2203.00555; microsoft/torchscale decoder.py",
                    setup=_deepnorm_setup, init=_deepnorm_init)
def _deepnorm(block, sub, x):
    return _n(block, sub, "post")(block.residual_alpha * x + _f(block, sub)(x))


def mixln_post_layers(n_layer: int, frac: float) -> int:
    """How many of the first blocks are post-norm: floor(frac * n_layer) (Mix-LN's POST_NUM)."""
    return math.floor(frac * n_layer + 1e-9)  # the epsilon keeps 0.25 * 8 = 2 from flooring to 1


def _mixln_setup(block, cfg):
    block.is_post = block.layer_idx < mixln_post_layers(cfg.n_layer, cfg.norm.mixln_post_frac)
    return ("post",) if block.is_post else ("in",)


@register_placement("mixln", ["post", "in"], True, "first ⌊frac·L⌋ blocks post, the rest pre; final N",
                    "Li et al. 2024 (Mix-LN), arXiv 2412.13795; nikitus20/mixln", setup=_mixln_setup)
def _mixln(block, sub, x):
    return _post(block, sub, x) if block.is_post else _pre(block, sub, x)


def _rezero_setup(block, cfg):
    # One gate per block shared by attention and MLP, as in majumderb/rezero rztx.py (`resweight`).
    block.resweight = nn.Parameter(torch.zeros(()))
    return ()


@register_placement("rezero", [], False, "x + a·F(x), a init 0 (one per block); no norms",
                    "Bachlechner et al. 2020 (ReZero), arXiv 2003.04887; majumderb/rezero",
                    setup=_rezero_setup)
def _rezero(block, sub, x):
    return x + block.resweight * _f(block, sub)(x)


@register_placement("none", [], False, "x + F(x); no norms", "CS336 layer_norm_ablation")
def _none(block, sub, x):
    return x + _f(block, sub)(x)


def has_final_norm(cfg) -> bool:
    """The placement's rule unless model.norm.final overrides it (seed 004 keeps ln_f with no norms)."""
    if cfg.norm.final == "auto":
        return PLACEMENTS[cfg.norm.placement].final_norm
    return cfg.norm.final == "always"
