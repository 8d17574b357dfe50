"""Cross-field rules and registry-backed choices, registered by the layers that own them.

The config layer sits at the bottom and must not import the model; instead the norm and
placement registries call `register_choices` / `register_rule` when they are imported, and
`validate()` runs them all. A broken rule raises ConfigError naming the keys and the reason.
"""
from __future__ import annotations

import difflib
import re
from typing import Callable

from .schema import ConfigError, RunConfig

# Every cross-field rule (module:function) and registry-backed choice (module:registry), declared here so that
# they can be listed without importing anything and validate() checks all of them whatever was imported
# before it. A rule returns None when the config is fine, else the reason it is refused; its module is
# imported on first use (most import torch, this module does not).
RULES = (
    "normlab.config.rules:_basic_shapes", "normlab.config.rules:_name_is_a_folder_name",
    "normlab.config.rules:_lists_hold_the_right_types", "normlab.config.resources:_fits_in_memory",
    "normlab.norms.base:_norm_options_are_valid", "normlab.model.validity:_norm_kind_fits_placement",
    "normlab.model.validity:_rezero_has_no_final_norm", "normlab.model.validity:_mixln_fraction",
    "normlab.model.validity:_attention_options_fit", "normlab.model.encdec:_encdec_needs_seq2seq",
    "normlab.model.placements.lns:_lns_replaces_depth_scaled_init",
    "normlab.model.placements.hybrid:_hybrid_first_pre_needs_hybrid", "normlab.model.ngpt:_ngpt_is_its_own_normalization",
    "normlab.training.trackers:_trackers_are_known_and_installed", "normlab.probes.base:_probe_settings",
    "normlab.data.tokens:_bpe_settings", "normlab.data.synthetic:_synthetic_settings",
)
CHOICES = {"model.norm.kind": "normlab.norms:NORMS", "model.norm.placement": "normlab.model.placements:PLACEMENTS"}
# what extensions add at run time (a plugin's own rule or choice)
_CHOICES: dict[str, Callable[[], list[str]]] = {}
_RULES: list[Callable[[RunConfig], str | None]] = []


def register_choices(dotted_path: str, provider: Callable[[], list[str]]) -> None:
    _CHOICES[dotted_path] = provider


def register_rule(rule: Callable[[RunConfig], str | None]) -> Callable:
    """An extra rule from outside the package: `rule(cfg)` returns None when the config is fine, else why not."""
    _RULES.append(rule)
    return rule


def resolve(ref: str):
    """The object a `module:name` reference names (importing its module)."""
    import importlib

    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def all_rules() -> list[Callable[[RunConfig], str | None]]:
    return [resolve(r) for r in RULES] + _RULES


def all_choices() -> dict[str, Callable[[], list[str]]]:
    return {**{path: (lambda ref=ref: list(resolve(ref))) for path, ref in CHOICES.items()}, **_CHOICES}


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: RunConfig, sources: dict[str, str] | None = None, training: bool = True) -> RunConfig:
    """Registry choices and every rule; `training=False` (a saved run read to sample or replay) skips the rules
    marked `training_only` (what this machine can train is not a property of the run)."""
    sources = sources or {}
    for path, provider in all_choices().items():
        value, allowed = _get(cfg, path), sorted(provider())
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else ""
            where = sources.get(path, "default")
            raise ConfigError(f"{path}={value!r} ({where}) is not registered; choose one of: "
                              f"{', '.join(allowed)}{hint}")
    for rule in all_rules():
        if not training and getattr(rule, "training_only", False):
            continue
        reason = rule(cfg)
        if reason:
            raise ConfigError(reason)
    return cfg


def _basic_shapes(cfg: RunConfig) -> str | None:
    m, t = cfg.model, cfg.train
    if m.d_model % m.n_head:
        return f"model.d_model={m.d_model} must be divisible by model.n_head={m.n_head}"
    if m.pos == "rope" and (m.d_model // m.n_head) % 2:
        return f"model.pos=rope needs an even head dim; d_model/n_head = {m.d_model // m.n_head}"
    if len(t.betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                    for b in t.betas):
        return f"train.betas={t.betas!r} must be two numbers in [0, 1), e.g. [0.9, 0.95]"
    if t.warmup_steps < 0 or t.warmup_steps >= t.steps:
        return f"train.warmup_steps={t.warmup_steps} must be in [0, train.steps={t.steps})"
    if m.attn.logit_clamp and m.attn.logit_softcap:
        return "model.attn.logit_clamp and model.attn.logit_softcap are exclusive: choose one"
    return None


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")


def _name_is_a_folder_name(cfg: RunConfig) -> str | None:
    """The run name becomes one folder under out_dir: no separators, no '.' or '..', nothing absolute."""
    if not NAME.fullmatch(cfg.name) or ".." in cfg.name:
        return (f"name={cfg.name!r} must be one folder name: letters, digits and . _ + = - (not starting with "
                "'.' or '-', no '/' and no '..'), at most 200 characters")
    if not cfg.out_dir.strip():
        return "out_dir must not be empty (default: runs)"
    return None


def _lists_hold_the_right_types(cfg: RunConfig) -> str | None:
    if not all(isinstance(n, str) for n in cfg.probes.names):
        return f"probes.names={cfg.probes.names!r} must be a list of probe names (strings), e.g. [all]"
    if not all(isinstance(t, str) for t in cfg.data.special_tokens):
        return f"data.special_tokens={cfg.data.special_tokens!r} must be a list of strings"
    return None
