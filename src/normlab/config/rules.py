"""Cross-field rules and registry-backed choices, registered by the layers that own them.

The config layer sits at the bottom and must not import the model; instead the norm and
placement registries call `register_choices` / `register_rule` when they are imported, and
`validate()` runs them all. A broken rule raises ConfigError naming the keys and the reason.
"""
from __future__ import annotations

import difflib
from typing import Callable

from .schema import ConfigError, RunConfig

_CHOICES: dict[str, Callable[[], list[str]]] = {}
_RULES: list[Callable[[RunConfig], str | None]] = []


def register_choices(dotted_path: str, provider: Callable[[], list[str]]) -> None:
    _CHOICES[dotted_path] = provider


def register_rule(rule: Callable[[RunConfig], str | None]) -> Callable:
    """`rule(cfg)` returns None when the config is fine, else the reason it is refused."""
    _RULES.append(rule)
    return rule


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: RunConfig, sources: dict[str, str] | None = None) -> RunConfig:
    sources = sources or {}
    for path, provider in _CHOICES.items():
        value, allowed = _get(cfg, path), sorted(provider())
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else ""
            where = sources.get(path, "default")
            raise ConfigError(f"{path}={value!r} ({where}) is not registered; choose one of: "
                              f"{', '.join(allowed)}{hint}")
    for rule in _RULES:
        reason = rule(cfg)
        if reason:
            raise ConfigError(reason)
    return cfg


@register_rule
def _basic_shapes(cfg: RunConfig) -> str | None:
    m, t = cfg.model, cfg.train
    if m.d_model <= 0 or m.n_head <= 0 or m.n_layer <= 0 or m.block_size <= 1:
        return "model.d_model, model.n_head, model.n_layer must be positive and model.block_size > 1"
    if m.d_model % m.n_head:
        return f"model.d_model={m.d_model} must be divisible by model.n_head={m.n_head}"
    if m.pos == "rope" and (m.d_model // m.n_head) % 2:
        return f"model.pos=rope needs an even head dim; d_model/n_head = {m.d_model // m.n_head}"
    if t.steps <= 0 or t.batch_size <= 0 or t.lr <= 0:
        return "train.steps, train.batch_size and train.lr must be positive"
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        return f"train.betas={t.betas} must be two numbers in [0, 1)"
    if t.warmup_steps < 0 or t.warmup_steps >= t.steps:
        return f"train.warmup_steps={t.warmup_steps} must be in [0, train.steps={t.steps})"
    if not 0 < cfg.data.val_frac < 1:
        return f"data.val_frac={cfg.data.val_frac} must be strictly between 0 and 1"
    if min(m.attn.logit_clamp, m.attn.logit_softcap, m.out_logit_softcap) < 0:
        return "logit_clamp / logit_softcap / out_logit_softcap must be >= 0 (0 = off)"
    if m.attn.logit_clamp and m.attn.logit_softcap:
        return "model.attn.logit_clamp and model.attn.logit_softcap are exclusive: choose one"
    return None
