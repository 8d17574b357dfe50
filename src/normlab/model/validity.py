"""Validity matrix: which norm kind x placement combinations make sense, and the reason when not.

The rules are registered with `config.rules`, so a refused combination stops at config time,
before a sweep starts any run; `pair_reason` is also what `normlab list pairs` prints. Rules read
properties, not names, so a new kind or placement is classified without editing this file:
- a kind that is a no-op (identity) is refused in any slot: the model would be placement=none
  under another name (and in deepnorm α·x would grow (2L)^¼ per sublayer, unnormalized);
- a kind that does not normalize (`normalizes = False`: DyT) is refused in a "post" slot (post,
  deepnorm, mixln), where the norm sits on the residual sum and alone must keep the stream's scale.
"""
from __future__ import annotations

from torch import nn

from ..config import register_rule
from ..norms import NORMS
from .placements import PLACEMENTS


def _slot_names(slots) -> str:
    return "/".join(f"'{s}'" for s in slots)


def pair_reason(kind: str, placement: str) -> str | None:
    """None when norm kind x placement makes sense, else why not (one sentence with the fix)."""
    cls, p = NORMS[kind], PLACEMENTS[placement]
    if issubclass(cls, nn.Identity) and p.slots:
        worse = (" (worse: α·x then grows by (2L)^¼ per sublayer with nothing to renormalize it)"
                 if placement == "deepnorm" else "")
        return (f"norm kind {kind} in the {_slot_names(p.slots)} slots of placement {placement} computes "
                f"nothing, so the model is placement=none under another name{worse}; use "
                "model.norm.placement=none (with model.norm.final=always to keep a final norm)")
    if not getattr(cls, "normalizes", True) and "post" in p.slots:
        return (f"norm kind {kind} does not normalize (tanh squashes each channel; no statistic of x), but "
                f"placement {placement} puts its norm on the residual sum x + F(x), where it alone must keep "
                "the stream's scale: tanh(α·x) shrinks the stream by about α per sublayer for small inputs "
                "and saturates it to ±γ for large ones. DyT replaces the norms of a pre-norm model "
                "(Zhu et al. 2025); use model.norm.placement=pre or peri")
    return None


def kind_is_used(placement: str) -> bool:
    """False for placements with no norm slots and no final norm by default (none, rezero)."""
    p = PLACEMENTS[placement]
    return bool(p.slots) or p.final_norm


def valid_pairs() -> list[tuple[str, str]]:
    """Every (kind, placement) the matrix accepts, sorted."""
    return [(k, p) for k in sorted(NORMS) for p in sorted(PLACEMENTS) if pair_reason(k, p) is None]


@register_rule
def _norm_kind_fits_placement(cfg) -> str | None:
    n = cfg.model.norm
    reason = pair_reason(n.kind, n.placement)
    return f"model.norm.kind={n.kind} with model.norm.placement={n.placement} is refused: {reason}" if reason else None


@register_rule
def _rezero_has_no_final_norm(cfg) -> str | None:
    n = cfg.model.norm
    if n.placement == "rezero" and n.final == "always":
        return ("model.norm.placement=rezero with model.norm.final=always is refused: ReZero is norm-free by design "
                "(x + a·F(x), a = 0 at init, so every block starts as the identity) and a final norm puts back "
                "what it removes; use model.norm.final=auto, or placement=none with final=always")
    return None


@register_rule
def _mixln_fraction(cfg) -> str | None:
    frac = cfg.model.norm.mixln_post_frac
    if not 0.0 <= frac <= 1.0:
        return f"model.norm.mixln_post_frac={frac} must be in [0, 1] (the fraction of blocks that are post-norm)"
    return None
