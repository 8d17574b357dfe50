"""NORMS registry: norm kind name -> nn.Module class taking (dim, cfg, role).

A kind is one small file with one class decorated by `register_norm`. The explicit imports at
the bottom (no auto-discovery) keep every variant greppable. `role` says where the norm sits
(attn_in, attn_out, mlp_in, mlp_out, final, q, k) for kinds whose init depends on it (DyT).
"""
from __future__ import annotations

from torch import nn

from ..config import NormConfig, register_choices

NORMS: dict[str, type[nn.Module]] = {}


def register_norm(name: str):
    def wrap(cls):
        if name in NORMS:
            raise KeyError(f"norm kind {name!r} is registered twice")
        cls.kind = name
        NORMS[name] = cls
        return cls
    return wrap


def build_norm(cfg: NormConfig, dim: int, role: str = "") -> nn.Module:
    return NORMS[cfg.kind](dim, cfg, role)


def describe(cls) -> str:
    """The first line of the class docstring: the one-line formula shown by `normlab list norms`."""
    return (cls.__doc__ or "").strip().splitlines()[0]


register_choices("model.norm.kind", lambda: list(NORMS))

from . import identity, layernorm, rmsnorm  # noqa: E402,F401  (registration side effects)

__all__ = ["NORMS", "build_norm", "describe", "register_norm"]
