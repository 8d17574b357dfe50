"""Recorder: forward hooks attached by module-name glob, always removed; probes reduce what they saw.

    with Recorder(model, ["attn_entropy", "massive_activations"]) as rec:
        model(x)
    summary = rec.summary()        # {"attn_entropy": {"layer0": 2.1, ..., "per_head": array}, ...}

Globs match dotted module names segment by segment: `*` is one segment, `**` any number of them
(`**.blocks.*` = every block, also inside `encoder.`), "" the model itself. The model knows nothing
about probes (STYLE.md section 5; the hook pattern follows litgpt generate/tp.py). Fused SDPA never
shows attention probabilities, so `View.attention` asks each attention module for them
(`probabilities(q, k, pad)`, the module's own definition) on its `tap_q`/`tap_k`/`tap_pad` outputs.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import ProbeConfig


def unwrap(model: nn.Module) -> nn.Module:
    """The eager module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    # Matched against name + "." so that every segment, the last included, ends with a dot.
    parts = []
    for seg in pattern.split("."):
        if seg == "**":
            parts.append(r"(?:[^.]+\.)*")
        elif seg == "*":
            parts.append(r"[^.]+\.")
        else:
            parts.append(re.escape(seg).replace(r"\*", "[^.]*") + r"\.")
    return re.compile("".join(parts) + "$")


@functools.lru_cache(maxsize=1 << 16)   # a probe pass asks the same (pattern, module name) pairs every time
def glob_match(pattern: str, name: str) -> bool:
    """`blocks.*` matches blocks.3 but not blocks.3.attn; `**.tap_q` matches any tap_q; "" the root."""
    if pattern == "" or name == "":
        return pattern == name
    return _glob_regex(pattern).match(name + ".") is not None


def short_name(name: str) -> str:
    """blocks.3.norm_attn_in.weight -> layer3.norm_attn_in.weight (the key style of metrics.jsonl)."""
    return re.sub(r"(^|\.)blocks\.(\d+)", r"\1layer\2", name)


def layer_of(name: str) -> str:
    """The layer a module belongs to: layer3 (decoder-only blocks.3), encoder.layer0 / decoder.layer1 (an
    encoder-decoder's stacks), else its first segment (wte, lm_head)."""
    m = re.match(r"^(.*?)(blocks|encoder|decoder)\.(\d+)(\.|$)", name)
    if not m:
        return name.split(".")[0] or "model"
    stack = "" if m.group(2) == "blocks" else f"{m.group(2)}."
    return f"{m.group(1)}{stack}layer{m.group(3)}"


def attention_label(parent: str) -> str:
    """layer3 for blocks.3.attn; layer3.cross for a second attention module of the block (encoder-decoder)."""
    label = layer_of(parent)
    if not parent.endswith(".attn") and parent != "attn" and label != parent:
        label += "." + parent.rsplit(".", 1)[-1]
    return label


@dataclass
class AttentionMap:
    label: str              # layer3, or layer3.xattn for a second attention module in the block
    probs: torch.Tensor     # B,H,T,S post-softmax (float32 or float64), masked entries exactly 0
    scores: torch.Tensor    # B,H,T,S raw q.k/sqrt(D) before clamp/softcap, masked entries -inf
    causal: bool


class View:
    """What one forward showed the Recorder, with derived quantities computed once and shared. `inputs` holds
    the first input of the modules a probe asked for by `input_patterns` (e.g. a norm's x). `x` and `y` are
    the probe batch's token ids and next-token targets when the caller passed them (probe_model's x, y): a
    probe that needs its own forwards (skip a block) or a loss reads them."""

    x: torch.Tensor | None = None   # B,T input ids
    y: torch.Tensor | None = None   # B,T targets (data.IGNORE where there is none)
    roles: torch.Tensor | None = None   # B,T per input position: 1 = the next token follows a rule (a synthetic
    # source's trigger), 0 = plain; None when the data does not say (every non-synthetic corpus)

    def __init__(self, model: nn.Module, outputs: dict[str, torch.Tensor], inputs: dict | None = None):
        self.model, self.outputs, self.inputs = model, outputs, inputs or {}
        self._matches: dict[str, list] = {}

    def matching(self, pattern: str) -> list[tuple[str, torch.Tensor]]:
        """Captured outputs whose module name matches, in the order the forward produced them (a new list each call;
        the search is done once per pattern: several probes read the same modules)."""
        if pattern not in self._matches:
            self._matches[pattern] = [(n, t) for n, t in self.outputs.items() if glob_match(pattern, n)]
        return list(self._matches[pattern])

    @functools.cached_property
    def attention(self) -> list[AttentionMap]:
        """Every attention module's weights, from its own `probabilities(q, k, pad)` on the tapped tensors."""
        maps = []
        for name, q in self.matching("**.tap_q"):
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            prefix = f"{parent}." if parent else ""
            k = self.outputs.get(f"{prefix}tap_k")
            module = self.model.get_submodule(parent)
            if k is None or not hasattr(module, "probabilities"):
                continue
            probs, scores = module.probabilities(q, k, self.outputs.get(f"{prefix}tap_pad"))
            maps.append(AttentionMap(attention_label(parent), probs, scores, bool(getattr(module, "causal", True))))
        return maps

    @functools.cached_property
    def residual(self) -> list[tuple[str, torch.Tensor]]:
        """The residual stream after each block (block outputs), labelled by layer."""
        return [(layer_of(n), t) for n, t in self.matching("**.blocks.*")]

    @property
    def logits(self) -> torch.Tensor | None:
        return self.outputs.get("")


ATTENTION_PATTERNS = ("**.tap_q", "**.tap_k", "**.tap_pad")


class Recorder:
    """Context manager: registers forward hooks on entry and removes every handle on exit (also on errors)."""

    def __init__(self, model: nn.Module, probes=("all",), cfg: ProbeConfig | None = None):
        from .base import PROBES, Probe, resolve_names  # noqa: F811

        self.model = unwrap(model)
        self.cfg = cfg or ProbeConfig()
        self.probes: list[Probe] = []
        for p in probes:
            if isinstance(p, Probe):
                self.probes.append(p)
                continue
            for name in resolve_names([p]):
                if name not in PROBES:
                    raise ValueError(f"unknown probe {name!r}; registered: {', '.join(PROBES)}")
                self.probes.append(PROBES[name](self.cfg))
        patterns = {pat for p in self.probes for pat in p.patterns}
        in_patterns = {pat for p in self.probes for pat in getattr(p, "input_patterns", ())}
        self.targets = [(n, m) for n, m in self.model.named_modules() if any(glob_match(p, n) for p in patterns)]
        self.input_targets = [(n, m) for n, m in self.model.named_modules()
                              if any(glob_match(p, n) for p in in_patterns)]
        self.outputs: dict[str, torch.Tensor] = {}
        self.inputs: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self.x = self.y = self.roles = None  # the batch, for probes that run their own forwards (View.x / View.y)

    def __enter__(self) -> "Recorder":
        self.outputs.clear()
        self.inputs.clear()
        try:
            for name, module in self.targets:
                self._handles.append(module.register_forward_hook(functools.partial(self._keep, name)))
            for name, module in self.input_targets:
                self._handles.append(module.register_forward_hook(functools.partial(self._keep_input, name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self.remove()
        return False

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def _keep(self, name, module, args, output) -> None:
        if isinstance(output, (tuple, list)):
            output = next((o for o in output if isinstance(o, torch.Tensor)), None)
        if isinstance(output, torch.Tensor):
            self.outputs.pop(name, None)  # re-insert: dict order = the order outputs were produced
            self.outputs[name] = output.detach()

    def _keep_input(self, name, module, args, output) -> None:
        if args and isinstance(args[0], torch.Tensor):
            self.inputs.pop(name, None)
            self.inputs[name] = args[0].detach()

    def summary(self) -> dict[str, dict]:
        """{probe name: {key: float | ndarray}} from the last forward seen (and the model's parameters)."""
        view = View(self.model, self.outputs, self.inputs)
        view.x, view.y, view.roles = self.x, self.y, self.roles
        with torch.no_grad():
            return {p.name: p.reduce(view) for p in self.probes}


def flatten(summary: dict[str, dict]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Split a summary into metrics scalars (probe/<name>/<key>) and npz arrays (<name>/<key>)."""
    scalars, arrays = {}, {}
    for probe, values in summary.items():
        for key, value in values.items():
            if isinstance(value, np.ndarray):
                arrays[f"{probe}/{key}"] = value
            else:
                scalars[f"probe/{probe}/{key}"] = float(value)
    return scalars, arrays


def probe_model(model: nn.Module, x: torch.Tensor, probes=("all",), cfg: ProbeConfig | None = None,
                src: torch.Tensor | None = None, y: torch.Tensor | None = None,
                roles: torch.Tensor | None = None) -> dict:
    """One probe pass: eval mode, no_grad, hooks attached for exactly this forward; train mode restored.
    `src` is the source sequence of an encoder-decoder batch, `y` the batch's targets (View.y), `roles` the
    positions' roles where the data source knows them (View.roles: a synthetic source's triggers). The probes
    reduce after the hooks are gone, so a probe's own forwards (View.x) are not recorded over this one."""
    inner = unwrap(model)
    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad(), Recorder(inner, probes, cfg) as rec:
            inner(x) if src is None else inner(x, src=src)
        if src is None:  # an encoder-decoder's forward needs its source too: no own forwards there
            rec.x, rec.y, rec.roles = x, y, roles
        return rec.summary()
    finally:
        inner.train(was_training)


def labels_array(labels: list[str]) -> np.ndarray:
    return np.array(labels, dtype=np.str_)
