"""The placement registry and the helpers every placement file uses (sublayer, norm, Scale)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn



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
