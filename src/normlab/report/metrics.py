"""Named metrics (a function of run-directory files) and preconditions, for declared claims.

A metric has a scope:
- "run": fn(run, **kw) -> float | None (None: undefined for this run, e.g. the val loss of a diverged run);
- "pair": fn(run_a, run_b, **kw) -> float | None, for claims about a relation of two same-seed runs;
- "group": fn(runs, **kw) -> float | None over every run of a side (several variants) for one seed;
- "seeds": fn({seed: runs}, **kw) -> {seed: value}: a metric that looks across seeds (best-of-grid
  chosen on the other seeds, so the value for seed k never selected on seed k).
"count" metrics return (k, n) for an exact test of proportions. `discrete` marks ties by design
(counts, shares of 8 heads): the paired test is then an exact permutation test, never a t-test.
Experiment folders register their own with the same decorators (experiments/<name>/metrics.py).
A precondition checks that a claim's phenomenon is present at all: fn(groups, **kw) -> (ok, reason).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config import ConfigError
from .runs import RunData


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable
    scope: str = "run"
    discrete: bool = False
    count: bool = False
    units: str = ""
    about: str = ""


METRICS: dict[str, Metric] = {}
PRECONDITIONS: dict[str, Callable] = {}


def metric(name: str, scope: str = "run", discrete: bool = False, count: bool = False, units: str = ""):
    def wrap(fn):
        if scope not in ("run", "pair", "group", "seeds"):
            raise ValueError(f"metric {name}: scope {scope!r}")
        METRICS[name] = Metric(name, fn, scope, discrete or count, count, units,
                               (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "")
        return fn
    return wrap


def precondition(name: str):
    def wrap(fn):
        PRECONDITIONS[name] = fn
        return fn
    return wrap


def get_metric(name: str, where: str) -> Metric:
    if name not in METRICS:
        import difflib

        close = difflib.get_close_matches(name, list(METRICS), n=1, cutoff=0.5)
        raise ConfigError(f"{where}: unknown metric {name!r}" + (f"; did you mean {close[0]}?" if close else "")
                          + f" (known: {', '.join(sorted(METRICS))})")
    return METRICS[name]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _window(run: RunData, first: int | None, last: int | None) -> np.ndarray | None:
    """The per-step training losses of a window, or None when the run did not train through all of it."""
    loss = run.loss
    if (first or last or 0) > len(loss):
        return None  # the run is shorter than the window: it has no "first/last N steps"
    if first is not None:
        w = loss[:first]
    elif last is not None:
        w = loss[-last:]
    else:
        w = loss
    if len(w) == 0 or not np.isfinite(w).all():
        return None  # the window is incomplete (a diverged run) or holds a non-finite loss
    return w


# ---- generic run metrics --------------------------------------------------------------------

@metric("final_val_loss", units="nats/token")
def final_val_loss(run: RunData):
    """Validation loss at the end of training (nats/token); undefined for a run that did not complete."""
    v = run.summary.get("val_loss")
    return float(v) if run.status == "complete" and _finite(v) else None


@metric("final_val_ppl")
def final_val_ppl(run: RunData):
    """exp(final validation loss)."""
    v = final_val_loss(run)
    return math.exp(v) if v is not None else None


@metric("final_val_bpb", units="bits/byte")
def final_val_bpb(run: RunData):
    """Validation bits per byte at the end of training."""
    v = run.summary.get("val_bpb")
    return float(v) if run.status == "complete" and _finite(v) else None


@metric("mean_train_loss", units="nats/token")
def mean_train_loss(run: RunData, first: int | None = None, last: int | None = None):
    """Mean training loss over the first or last N steps (undefined if the run did not train through them)."""
    w = _window(run, first, last)
    return float(w.mean()) if w is not None else None


@metric("max_train_loss", units="nats/token")
def max_train_loss(run: RunData, first: int | None = None, last: int | None = None):
    """Largest training loss over the first or last N steps."""
    w = _window(run, first, last)
    return float(w.max()) if w is not None else None


@metric("min_train_loss", units="nats/token")
def min_train_loss(run: RunData):
    """Smallest training loss seen (finite steps)."""
    finite = run.loss[np.isfinite(run.loss)]
    return float(finite.min()) if finite.size else None


@metric("diverged", discrete=True)
def diverged(run: RunData):
    """1 if the run diverged (non-finite loss or over train.loss_bound), else 0."""
    return float(run.status == "diverged") if run.finished else None


@metric("diverged_runs", count=True)
def diverged_runs(run: RunData):
    """(1, 1) for a diverged run, (0, 1) for a complete one: the share of seeds that diverged."""
    return (int(run.status == "diverged"), 1) if run.finished else None


@metric("summary_value")
def summary_value(run: RunData, key: str, scale: float = 1.0):
    """A number from summary.json (e.g. task_exact_match, max_act), times `scale`."""
    v = run.summary.get(key)
    return float(v) * scale if _finite(v) and run.finished else None


@metric("probe_last")
def probe_last(run: RunData, key: str, reduce: str = "mean"):
    """A probe scalar at the last probe step; `key` may end in '*' (reduced over layers by mean or max)."""
    probes = run.probes
    if probes is None:
        return None
    values = [series[max(series)] for k, series in probes.scalars.items()
              if series and (k == key or (key.endswith("*") and k.startswith(key[:-1])))]
    values = [v for v in values if _finite(v)]
    if not values:
        return None
    return float(np.mean(values) if reduce == "mean" else np.max(values))


@metric("probe_peak")
def probe_peak(run: RunData, key: str):
    """Max over training (all probe steps) of a probe scalar; `key` may end in '*' (max over layers)."""
    probes = run.probes
    if probes is None:
        return None
    values = [v for k, series in probes.scalars.items() if k == key or (key.endswith("*") and k.startswith(key[:-1]))
              for v in series.values()]
    if any(not _finite(v) for v in values):
        return math.inf  # a non-finite value: larger than any finite bound
    return float(max(values)) if values else None


FLOAT32_MAX = float(np.finfo(np.float32).max)


@metric("probe_peak_log10")
def probe_peak_log10(run: RunData, key: str):
    """log10 of probe_peak: peaks that differ by orders of magnitude (activations, logits) compare on a log
    scale; a non-finite value (an overflow) counts as float32's largest, larger than any finite peak."""
    peak = probe_peak(run, key)
    if peak is None:
        return None
    return math.log10(min(max(peak, 1e-30), FLOAT32_MAX))


def cumulative_mean(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    return np.cumsum(np.where(finite, x, 0.0), axis=-1) / np.maximum(np.cumsum(finite, axis=-1), 1)


@metric("cumavg_max_gap", scope="pair", units="nats/token")
def cumavg_max_gap(a: RunData, b: RunData, skip: int = 10):
    """max over steps t >= skip of (cumulative mean loss of a - that of b): < 0 means a led at every step."""
    n = min(len(a.loss), len(b.loss))
    if n <= skip or not (np.isfinite(a.loss[:n]).all() and np.isfinite(b.loss[:n]).all()):
        return None
    return float((cumulative_mean(a.loss[:n]) - cumulative_mean(b.loss[:n]))[skip:].max())


@metric("single_char_samples", count=True)
def single_char_samples(run: RunData, length: int = 1):
    """(samples of exactly `length` characters, samples): the seed's degenerate 'a', 'a', 'a'."""
    if not run.samples:
        return None
    return sum(len(s) == length for s in run.samples), len(run.samples)


# ---- generic preconditions ------------------------------------------------------------------

@precondition("samples_nonempty")
def samples_nonempty(groups: dict[str, list[RunData]], variant: str, min_frac: float = 0.5):
    """The variant's samples are mostly non-empty, so their length distribution says something."""
    samples = [s for r in groups.get(variant, []) for s in r.samples]
    frac = sum(bool(s) for s in samples) / len(samples) if samples else 0.0
    return frac >= min_frac, f"{variant}: {frac:.0%} of {len(samples)} samples are non-empty (need {min_frac:.0%})"


@precondition("attention_not_uniform")
def attention_not_uniform(groups: dict[str, list[RunData]], variants: list[str], layers: str = "all",
                          max_ratio: float = 0.9):
    """In every seed of each variant, some layer's attention entropy / its maximum (mean over heads, last probe
    step) is below `max_ratio`: the model learned to focus somewhere. Chance level is 1: uniform attention over
    the t + 1 visible keys has entropy log(t + 1). A claim about entropic overload (heads stuck near that
    maximum) needs a baseline that leaves it, on every seed, or overload is the setup, not the method. 0.9, not
    0.99: at 0.99 a run whose heads barely moved (0.98) would pass (phenomena.md §1.4)."""
    parts, ok = [], True
    for v in variants:
        runs = groups.get(v, [])
        lows = [min(ratios) for run in runs if (ratios := layer_entropy_ratio(run, layers))]
        if not runs:
            return False, f"{v}: no runs"
        if len(lows) < len(runs):
            return False, f"{v}: no attention-entropy probe data in {len(runs) - len(lows)} of {len(runs)} run(s)"
        passed = sum(m < max_ratio for m in lows)
        ok &= passed == len(lows)
        parts.append(f"{v} lowest layer entropy/max per seed {min(lows):.3f}-{max(lows):.3f} "
                     f"({passed}/{len(lows)} seeds below {max_ratio})")
    return ok, (", ".join(parts) + f" (needs < {max_ratio} in some {'early ' if layers == 'early' else ''}layer "
                f"of every seed; chance level 1.000 = exactly uniform attention)")


def layer_entropy_ratio(run: RunData, layers: str = "all") -> list[float]:
    """Mean over heads of entropy / log(t+1) per layer at the last probe step (early = first half)."""
    probes = run.probes
    grid = probes.array("attn_entropy/per_head_norm") if probes else None
    if grid is None:
        return []
    rows = [float(np.nanmean(row)) for row in grid]
    return rows[: max(1, len(rows) // 2)] if layers == "early" else rows


@precondition("metric_varies")
def metric_varies(groups: dict[str, list[RunData]], variants: list[str], metric_name: str, **kw):
    """A metric takes more than one value across the variants' runs (a saturated metric cannot rank them)."""
    m = get_metric(metric_name, "precondition metric_varies")
    values = {m.fn(r, **kw) for v in variants for r in groups.get(v, [])} - {None}
    return len(values) > 1, f"{metric_name} takes {len(values)} distinct value(s) over {', '.join(variants)}"
