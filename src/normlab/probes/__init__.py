"""PROBES registry: probe name -> reducer class; the Recorder that attaches them lives in recorder.py.

A probe reads the outputs the Recorder captured (module outputs matched by name globs) or the
model's parameters, and returns a small summary: floats (-> metrics.jsonl as probe/<name>/<key>)
and numpy arrays (-> probes/step_N.npz as <name>/<key>). One probe per file, imported explicitly
below so grep finds every one. Definitions: DESIGN.md (Probes), norm-methods.md sections 6 and 8.
"""
from __future__ import annotations

import numpy as np

from ..config import ProbeConfig, register_rule
from ..registry import registrar


class Probe:
    """Base class: `patterns` are the module-name globs it reads; `reduce(view)` returns its summary."""

    name = ""
    patterns: tuple[str, ...] = ()

    def __init__(self, cfg: ProbeConfig):
        self.cfg = cfg

    def reduce(self, view) -> dict[str, float | np.ndarray]:
        raise NotImplementedError


PROBES: dict[str, type[Probe]] = {}


register_probe = registrar(PROBES, "probe", "name")


def describe(cls) -> str:
    """The first line of the class docstring (shown by `normlab list probes`)."""
    return (cls.__doc__ or "").strip().splitlines()[0]


def resolve_names(names: list[str]) -> list[str]:
    """Expand `all` into every registered probe, keeping registry order and dropping repeats."""
    out: list[str] = []
    for n in names:
        for m in (list(PROBES) if n == "all" else [n]):
            if m not in out:
                out.append(m)
    return out


@register_rule
def _probe_settings(cfg) -> str | None:
    import difflib

    p = cfg.probes
    for n in p.names:
        if n != "all" and n not in PROBES:
            close = difflib.get_close_matches(str(n), list(PROBES), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else ""
            return f"probes.names: {n!r} is not a registered probe; choose from: all, {', '.join(PROBES)}{hint}"
    if min(p.every, p.grad_every, p.snapshot_every, p.batch_size - 1) < 0 or p.batch_size < 1:
        return "probes.every, probes.grad_every, probes.snapshot_every must be >= 0 and probes.batch_size >= 1"
    if not 0 < p.overload_threshold <= 1:
        return f"probes.overload_threshold={p.overload_threshold} must be in (0, 1]"
    if p.act_bound < 0:
        return f"probes.act_bound={p.act_bound} must be >= 0 (0 = only non-finite values count as bad)"
    return None


from . import (attn_entropy, attn_sinks, embedding_norms, grad_norms, logit_stats,  # noqa: E402,F401
               massive_activations, nan_counts, ngpt_eigen_lrs, norm_weights)
from .recorder import Recorder, View, flatten, probe_model, unwrap  # noqa: E402

__all__ = ["PROBES", "Probe", "Recorder", "View", "describe", "flatten", "probe_model", "register_probe",
           "resolve_names", "unwrap"]
