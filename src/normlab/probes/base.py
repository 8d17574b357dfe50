"""The probe registry (PROBES, Probe, Figure, register_probe): imported by every probe file and by the
Recorder, so it lives apart from the package __init__ that discovers them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ProbeConfig
from ..registry import registrar


@dataclass(frozen=True)
class Figure:
    """A figure a probe's outputs make in every report (the report loops over the registry and draws it).

    kind: "layers" (a scalar per layer over training: key = scalar prefix, one panel per variant),
    "heads" (a layers x heads grid: key = npz array, at the first/middle/last probe step or the last),
    "profile" (top-k and median per layer at the last step), "channels" (per-channel vectors at the
    last step, by index and sorted), "histogram" (a vector's distribution at the last step)."""
    kind: str
    key: str
    file: str
    title: str
    caption: str
    log: bool = False
    steps: str = "spread"          # heads: "spread" (first, middle, last) or "last"
    cmap: str = "viridis"


class Probe:
    """Base class: `patterns` are the module-name globs it reads; `reduce(view)` returns its summary.

    `stage` says when the training loop runs it: "forward" (a probe pass on the fixed probe batch,
    every probes.every steps), "gradients" (after backward, before clipping, every probes.grad_every
    steps: such a probe implements `tracker(model)` returning an object with `keys` and `measure()`,
    a device tensor of len(keys) values or None) or "update" (around the optimizer step every
    probes.update_every steps: `tracker(model, optimizer)` with `keys`, `snapshot()` called after
    backward and `measure()` after the step). `input_patterns` name modules whose *input* the
    Recorder keeps (View.inputs), for probes that need what a module was given (a norm's x).
    `in_all = False` leaves a probe out of `probes.names=[all]` (the default): one that runs forwards of
    its own costs every run, so the experiments that need it name it."""

    name = ""
    stage = "forward"
    patterns: tuple[str, ...] = ()
    input_patterns: tuple[str, ...] = ()
    peaks: dict[str, str] = {}   # summary.json key -> prefix of this probe's scalar keys whose max over training it holds
    figures: tuple[Figure, ...] = ()
    in_all = True

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
    """Expand `all` into every registered probe that is `in_all`, keeping registry order and dropping repeats."""
    out: list[str] = []
    for n in names:
        for m in ([k for k, cls in PROBES.items() if cls.in_all] if n == "all" else [n]):
            if m not in out:
                out.append(m)
    return out


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
