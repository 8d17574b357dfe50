"""Validity matrix: which norm kind x placement combinations make sense, and the reason when not.

The rules are registered with `config.rules`, so a refused combination stops at config time,
before a sweep starts any run; `pair_reason` is also what `normlab list pairs` prints. Rules read
properties, not names, so a new kind or placement is classified without editing this file:
- a kind that is a no-op (identity) is refused in any slot: the model would be placement=none
  under another name (and in deepnorm α·x would grow (2L)^¼ per sublayer, unnormalized);
- a kind that does not normalize (`normalizes = False`: DyT, Derf, GatedDyT) is refused in a "post"
  slot (post, deepnorm, mixln, hybrid), where the norm sits on the residual sum and alone must keep
  the stream's scale.
Attention options and stabilizers that need what only the GPT's SelfAttention has, or that undo each
other, are refused here too (`_attention_options_fit`), reading the effective attention config (a
placement may switch options on: hybrid's qkv_norm).
"""
from __future__ import annotations

from torch import nn

from ..norms import NORMS
from .placements import PLACEMENTS, attention_config


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
        fits = sorted(n for n, q in PLACEMENTS.items() if q.slots and "post" not in q.slots)
        fits = ", ".join(fits[:-1]) + " or " + fits[-1] if len(fits) > 1 else "".join(fits)
        return (f"norm kind {kind} does not normalize (it squashes each element point-wise; no statistic of x), but "
                f"placement {placement} puts its norm on the residual sum x + F(x), where it alone must keep "
                "the stream's scale: a squashing function such as tanh(α·x) shrinks the stream by about α per "
                "sublayer for small inputs and saturates it to ±γ for large ones. DyT and Derf replace the norms "
                f"of a pre-norm model (Zhu et al. 2025, Chen et al. 2025); use model.norm.placement={fits}")
    return None


def kind_is_used(placement: str) -> bool:
    """False for placements with no norm slots and no final norm by default (none, rezero)."""
    p = PLACEMENTS[placement]
    return bool(p.slots) or p.final_norm


def valid_pairs() -> list[tuple[str, str]]:
    """Every (kind, placement) the matrix accepts, sorted."""
    return [(k, p) for k in sorted(NORMS) for p in sorted(PLACEMENTS) if pair_reason(k, p) is None]


def _norm_kind_fits_placement(cfg) -> str | None:
    n = cfg.model.norm
    reason = pair_reason(n.kind, n.placement)
    return f"model.norm.kind={n.kind} with model.norm.placement={n.placement} is refused: {reason}" if reason else None


def _rezero_has_no_final_norm(cfg) -> str | None:
    n = cfg.model.norm
    if n.placement == "rezero" and n.final == "always":
        return ("model.norm.placement=rezero with model.norm.final=always is refused: ReZero is norm-free by design "
                "(x + a·F(x), a = 0 at init, so every block starts as the identity) and a final norm puts back "
                "what it removes; use model.norm.final=auto, or placement=none with final=always")
    return None


def _mixln_fraction(cfg) -> str | None:
    frac = cfg.model.norm.mixln_post_frac
    if not 0.0 <= frac <= 1.0:
        return f"model.norm.mixln_post_frac={frac} must be in [0, 1] (the fraction of blocks that are post-norm)"
    return None


def _attention_problems(cfg) -> list[str]:
    m, t = cfg.model, cfg.train
    a = attention_config(m).attn  # what the attention is built with (hybrid switches qkv_norm on)
    frontier = (a.qkv_norm or a.gate != "none" or a.softmax != "softmax" or a.sink or a.qk_scale or m.resid_clip
                or t.qk_clip)
    if frontier and (m.arch != "gpt" or m.encoder_layers):
        return ["model.attn.qkv_norm / gate / softmax / sink / qk_scale, model.resid_clip and train.qk_clip are "
                "options of the decoder-only GPT (model.arch=gpt, model.encoder_layers=0); nGPT and the encoder-decoder have "
                "their own attention: leave them at their defaults"]
    problems = []
    if a.qkv_norm and a.qk_norm:
        why = " (placement hybrid switches qkv_norm on)" if not m.attn.qkv_norm else ""
        problems.append(f"model.attn.qk_norm and qkv_norm are exclusive{why}: qkv_norm already normalizes q and k; "
                        "set model.attn.qk_norm=false")
    if a.qk_scale and (a.qk_norm or a.qkv_norm or t.qk_clip):
        problems.append("model.attn.qk_scale sets q and k to a fixed scale (sqrt(kappa) z / rms(z)); qk_norm, qkv_norm "
                        "and train.qk_clip also set or rescale them: use one of them")
    if a.qkv_norm and not getattr(NORMS[m.norm.kind], "normalizes", True):
        problems.append(f"model.attn.qkv_norm normalizes q, k and v with model.norm.kind, but {m.norm.kind} does not "
                        "normalize (point-wise squashing, no statistic of x): choose a kind that does (e.g. rmsnorm)")
    if a.sink and a.softmax != "softmax":
        problems.append(f"model.attn.sink=true adds a logit to the softmax denominator; model.attn.softmax="
                        f"{a.softmax} has no such denominator (its rows need not sum to 1 anyway): use softmax")
    if t.qk_clip and (a.qk_norm or a.qkv_norm):
        problems.append("train.qk_clip rescales W_q and W_k, but model.attn.qk_norm / qkv_norm (or placement hybrid) "
                        "normalize q and k right after the projection, which undoes the rescale: QK-Clip is the "
                        "alternative to QK-norm (Kimi K2 could not use QK-norm with MLA); use one of them")
    if t.qk_clip and t.parallel == "fsdp":
        problems.append("train.qk_clip rescales rows of W_q and W_k per head, which FSDP shards across ranks: use "
                        "train.parallel=ddp")
    if t.weight_decay_mode == "independent" and t.weight_decay and t.optimizer not in ("adamw", "muon"):
        problems.append(f"train.weight_decay_mode=independent sets a decoupled decay (adamw, muon); optimizer="
                        f"{t.optimizer} applies {'none' if t.optimizer == 'adam' else 'L2 decay'}: use "
                        f"train.optimizer=adamw or muon, or weight_decay_mode=coupled")
    if t.optimizer == "sgd" and t.nesterov and not t.momentum:
        problems.append("train.nesterov=true needs train.momentum > 0 (Nesterov momentum of no momentum is plain SGD)")
    return problems


def _attention_options_fit(cfg) -> str | None:
    return "; and ".join(_attention_problems(cfg)) or None
