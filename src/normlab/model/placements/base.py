"""The placement registry and the helpers every placement file uses (sublayer, norm, Scale)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

SLOTS = ("in", "out", "post")   # a generic placement's slots, in the order slot_formula applies them


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
    generic: bool = False             # apply is slot_formula over `slots`: runs may share a stack (stacked_mix)


PLACEMENTS: dict[str, Placement] = {}


def register_placement(name, slots, final_norm, formula, reference, setup=None, init=None, attn=None,
                       generic=False):
    def wrap(fn):
        if name in PLACEMENTS:
            raise KeyError(f"placement {name!r} is registered twice")
        if generic and (setup or init or attn or not set(slots) <= set(SLOTS)):
            raise ValueError(f"placement {name!r}: a generic placement has only the slots {SLOTS} and no hooks")
        PLACEMENTS[name] = Placement(name, tuple(slots), final_norm, formula, reference, fn, setup, init,
                                     tuple(sorted((attn or {}).items())), generic)
        return fn
    return wrap


def slot_formula(block, sub, x):
    """[post](x + [out](F([in](x)))) over the norm slots the block has: the residual math of every generic
    placement (pre: in; post: post; none: no slot; peri: in, out; reorder: out). A stack of runs whose placements
    differ runs its blocks through this with every slot any member uses (training/stacked_mix.py)."""
    n_in, n_out, n_post = (getattr(block, f"norm_{sub}_{slot}", None) for slot in SLOTS)
    h = sublayer(block, sub)(x if n_in is None else n_in(x))
    y = x + (h if n_out is None else n_out(h))
    return y if n_post is None else n_post(y)


def attention_config(cfg):
    """The model config a block's attention is built from: cfg with its placement's attention options applied."""
    p = PLACEMENTS.get(cfg.norm.placement)
    if p is None or not p.attn:
        return cfg
    return dataclasses.replace(cfg, attn=dataclasses.replace(cfg.attn, **dict(p.attn)))




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
