"""The norm-kind registry itself (NORMS, register_norm, build_norm, options): imported by every kind's file,
so it lives apart from the package __init__ that discovers those files."""
from __future__ import annotations

from torch import nn

from ..config import ConfigError, NormConfig, from_dict
from ..registry import registrar

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


def _norm_options_are_valid(cfg) -> str | None:
    # Checked at config time so a typo in an option stops a sweep before any run starts.
    cls = NORMS.get(cfg.model.norm.kind)
    try:
        if cls is not None:
            norm_options(cls, cfg.model.norm)
    except ConfigError as err:
        return str(err)
    return None
