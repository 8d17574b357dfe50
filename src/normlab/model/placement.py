"""PLACEMENTS registry: where a block's norms sit. Each placement is 1-3 lines of residual math.

    pre (GPT-2, Llama)        post (Vaswani 2017)         peri / sandwich         none
    x ─┬─ N ─ F ─┐            x ─┬─ F ─┐                  x ─┬─ N ─ F ─ N ─┐      x ─┬─ F ─┐
       └─────────+─ out          └─────+─ N ─ out            └─────────────+─         └─────+─ out
    final N before head       no final N                  final N                 no final N

A placement names the norm slots it needs per sublayer ("in": on the sublayer input, "out": on
the sublayer output, "post": on the residual sum) and whether the model ends with a final norm.
Norm kind is a separate axis: the block builds each slot with `build_norm(cfg.norm, ...)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..config import register_choices


@dataclass(frozen=True)
class Placement:
    name: str
    slots: tuple[str, ...]
    final_norm: bool
    formula: str
    reference: str
    apply: Callable  # (block, sublayer_name, x) -> x


PLACEMENTS: dict[str, Placement] = {}


def register_placement(name, slots, final_norm, formula, reference):
    def wrap(fn):
        if name in PLACEMENTS:
            raise KeyError(f"placement {name!r} is registered twice")
        PLACEMENTS[name] = Placement(name, tuple(slots), final_norm, formula, reference, fn)
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


@register_placement("none", [], False, "x + F(x); no norms", "CS336 layer_norm_ablation")
def _none(block, sub, x):
    return x + _f(block, sub)(x)


def has_final_norm(cfg) -> bool:
    """The placement's rule unless model.norm.final overrides it (seed 004 keeps ln_f with no norms)."""
    if cfg.norm.final == "auto":
        return PLACEMENTS[cfg.norm.placement].final_norm
    return cfg.norm.final == "always"
