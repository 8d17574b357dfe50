"""NORMS registry: norm kind name -> nn.Module class taking (dim, cfg, role).

A kind is one small file with one class decorated by `register_norm`; every module of this folder
is imported (registry.import_all), so the file is the registration. `role` says where the norm sits
(attn_in, attn_out, attn_post, mlp_in, mlp_out, mlp_post, final, q, k) for kinds whose init depends
on it (DyT). Kind-specific knobs live in a nested `Options` dataclass filled strictly from
`model.norm.options`; a registered config rule checks them before any model is built.
A class attribute `normalizes = False` marks a kind that does not rescale by a statistic of its
input (DyT, identity): the validity matrix (model/validity.py) keeps it off the residual sum.
Stacked training (training/stacked.py) runs a kind with x of shape [E, N, C] and every parameter
with a leading member axis broadcast against it ([E, 1, C] for a per-channel vector, [E, 1, 1] for
a scalar): a forward must be written so that broadcasting does the right thing, and take a fused
path (kernels.py, F.rms_norm, F.layer_norm) only when `kernels.plain(*params)`.
"""
from __future__ import annotations

from torch import nn

from ..config import ConfigError, NormConfig, from_dict, register_choices, register_rule
from ..registry import import_all, registrar

NORMS: dict[str, type[nn.Module]] = {}


register_norm = registrar(NORMS, "norm kind", "kind")


def build_norm(cfg: NormConfig, dim: int, role: str = "") -> nn.Module:
    return NORMS[cfg.kind](dim, cfg, role)


def describe(cls) -> str:
    """The first line of the class docstring: the one-line formula shown by `normlab list norms`."""
    return (cls.__doc__ or "").strip().splitlines()[0]


def norm_options(cls, cfg: NormConfig):
    """The kind's `Options` filled from cfg.options (unknown or ill-typed option -> ConfigError)."""
    options_cls = getattr(cls, "Options", None)
    if options_cls is None:
        if cfg.options:
            raise ConfigError(f"model.norm.options={cfg.options!r}: norm kind {cfg.kind!r} takes no options")
        return None
    return from_dict(options_cls, cfg.options, source=f"options of norm kind {cfg.kind!r}",
                     prefix="model.norm.options.")


register_choices("model.norm.kind", lambda: list(NORMS))


@register_rule
def _norm_options_are_valid(cfg) -> str | None:
    # Checked at config time so a typo in an option stops a sweep before any run starts.
    cls = NORMS.get(cfg.model.norm.kind)
    try:
        if cls is not None:
            norm_options(cls, cfg.model.norm)
    except ConfigError as err:
        return str(err)
    return None


import_all(__name__, __path__, skip=("kernels",))  # every other module of this folder is one norm kind

__all__ = ["NORMS", "build_norm", "describe", "norm_options", "register_norm"]
