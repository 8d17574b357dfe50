"""sink-mechanics' metrics: sinks (beside their uniform baseline), value drains, residual peaks, active vs
dormant heads, the gradient sink and the cost of removing the sink, each read from its probe at the last probe
step (the probe batch: probes.batch_size rows of the validation draws, evaluation length = model.block_size).

Uniform baseline: a causal head attending uniformly puts 1/(t+1) on position 0 at query t, so its mean over the
T query rows is H_T / T (0.074 at T = 64): a head is a sink head when its mass exceeds Gu et al.'s 0.3, and
`sink_excess` is the mean mass on position 0 over that baseline (1 = uniform).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from normlab.experiments.spec import load_module
from normlab.report.metrics import metric, precondition

# seed 000's residual-sink-channel metrics and their precondition (sink_channel_gain_z, residual_sink_present)
# live with the sinks experiment; loading that module registers them for this experiment's claims too
load_module(Path(__file__).parents[1] / "sinks" / "metrics.py", "normlab.experiments._sinks.metrics")

SINK_THRESHOLD = 0.3      # Gu et al. 2024 (arXiv 2410.10781): epsilon = 0.3 at T = 64


def uniform_mass(T: int) -> float:
    """Mean over the T causal query rows of the uniform head's weight on position 0: H_T / T."""
    return sum(1.0 / t for t in range(1, T + 1)) / T


def eval_length(run) -> int:
    return int(run.config.get("model", {}).get("block_size", 0)) if isinstance(run.config, dict) else 0


def _last(run, key):
    probes = run.probes if run.status == "complete" else None
    grid = probes.array(key) if probes is not None else None
    if grid is None or not np.size(grid):
        return None
    grid = np.asarray(grid, float)
    return grid if np.isfinite(grid).all() else None


def _scalar(run, key):
    probes = run.probes if run.status == "complete" else None
    series = probes.scalars.get(key) if probes is not None else None
    if not series:
        return None
    value = series[max(series)]
    return float(value) if value is not None and math.isfinite(value) else None


def sink_rate(run):
    """Share of (layer, head) pairs whose mean attention to position 0 exceeds 0.3 (Gu et al. 2024), at the end."""
    grid = _last(run, "attn_sinks/per_head")
    return float(np.mean(grid > SINK_THRESHOLD)) if grid is not None else None


@metric("bos_mass")
def bos_mass(run):
    """Mean attention mass on position 0 over every layer, head and query row, at the end."""
    grid = _last(run, "attn_sinks/per_head")
    return float(grid.mean()) if grid is not None else None


@metric("max_head_sink")
def max_head_sink(run):
    """The largest head's mean attention mass on position 0 (the sink head), at the end."""
    grid = _last(run, "attn_sinks/per_head")
    return float(grid.max()) if grid is not None else None


@metric("sink_excess")
def sink_excess(run):
    """The sink head's mass on position 0 over the uniform causal head's H_T / T (1 = uniform), at the end."""
    top, T = max_head_sink(run), eval_length(run)
    return top / uniform_mass(T) if top is not None and T else None


@metric("value_drain_log10")
def value_drain_log10(run):
    """log10 of the smallest value-drain ratio ||v_0|| / mean_t ||v_t|| over the heads (< 0: a drain)."""
    grid = _last(run, "value_drain/per_head")
    return float(np.log10(max(grid.min(), 1e-12))) if grid is not None else None


@metric("resid_peak_log10")
def resid_peak_log10(run):
    """log10 of the largest residual peak ||h_0|| / median_t ||h_t|| over the layers (> 0: a peak at position 0)."""
    values = _last(run, "resid_peak/ratio")
    return float(np.log10(max(values.max(), 1e-12))) if values is not None else None


@metric("dormant_gap")
def dormant_gap(run):
    """Sink head's BOS mass on plain (bigram) positions minus on trigger positions: > 0 = dormant on plain
    tokens, active on triggers (Guo et al. 2024)."""
    plain, trig = _last(run, "active_dormant/plain"), _last(run, "active_dormant/trigger")
    if plain is None or trig is None or plain.shape != trig.shape:
        return None
    i = np.unravel_index(np.argmax(plain), plain.shape)
    return float(plain[i] - trig[i])


@metric("grad_sink_log10")
def grad_sink_log10(run):
    """log10 of ||dL/dh_0|| / median_t ||dL/dh_t|| at the embedding output (the gradient sink, arXiv 2603.17771)."""
    value = _scalar(run, "grad_sink/ratio/embed")
    return math.log10(max(value, 1e-12)) if value is not None else None


@metric("sink_ablation_cost", units="nats/token")
def sink_ablation_cost(run):
    """Loss increase on the probe batch when no head may attend to position 0 (rows renormalized)."""
    return _scalar(run, "sink_ablation/all")


@metric("loss_over_floor", units="nats/token")
def loss_over_floor(run):
    """Final validation loss minus the synthetic source's exact entropy floor."""
    floor = ((run.summary.get("data") or {}).get("val") or {}).get("entropy_floor_nats")
    val = run.summary.get("val_loss")
    return float(val - floor) if run.status == "complete" and val is not None and floor is not None else None


@precondition("sinks_on_every_seed")
def sinks_on_every_seed(groups, variants: list):
    """Each named variant has a sink head (mass on position 0 > 0.3, above the uniform H_T / T) in every run."""
    parts, ok = [], True
    for v in variants:
        runs = groups.get(v, [])
        rates = [sink_rate(r) for r in runs]
        if not runs or any(x is None for x in rates):
            return False, f"{v}: no attention-sink probe data"
        T = eval_length(runs[0])
        tops = [max_head_sink(r) for r in runs]
        ok &= all(x > 0 for x in rates)
        parts.append(f"{v}: {sum(x > 0 for x in rates)} of {len(runs)} runs have sink heads (rate "
                     f"{min(rates):.0%}-{max(rates):.0%}; top head {min(tops):.2f}-{max(tops):.2f} on position 0 vs "
                     f"uniform H_T/T = {uniform_mass(T):.3f} at T = {T})")
    return ok, "; ".join(parts) + " (needs sink heads in every run)"


@precondition("value_drain_present")
def value_drain_present(groups, variants: list, below: float = 0.5):
    """Each named variant's value-drain ratio ||v_0|| / mean ||v_t|| is below `below` in every run."""
    parts, ok = [], True
    for v in variants:
        values = [value_drain_log10(r) for r in groups.get(v, [])]
        if not values or any(x is None for x in values):
            return False, f"{v}: no value-drain probe data"
        ok &= all(10 ** x < below for x in values)
        parts.append(f"{v}: drain ratio {10 ** min(values):.3g}-{10 ** max(values):.3g}")
    return ok, "; ".join(parts) + f" (needs < {below:g} in every run)"


@metric("channel_outlier_log10")
def channel_outlier_log10(run):
    """log10 of the largest top/median channel ratio of mean |h| over the layers (resid_channels): basis-aligned
    outlier channels (Elhage et al. 2023; Kaul et al. 2024)."""
    probes = run.probes if run.status == "complete" else None
    if probes is None:
        return None
    values = [series[max(series)] for k, series in probes.scalars.items()
              if k.startswith("resid_channels/ratio/") and series]
    values = [v for v in values if v is not None and math.isfinite(v)]
    return math.log10(max(max(values), 1e-12)) if values else None


def _learned(groups, learned, max_gap):
    """(ok, text): each variant in `learned` ends within max_gap nats of the entropy floor in every run."""
    parts, ok = [], True
    for v in learned:
        gaps = [loss_over_floor(r) for r in groups.get(v, [])]
        if not gaps or any(g is None for g in gaps):
            return False, f"{v}: no loss or entropy floor"
        ok &= all(g < max_gap for g in gaps)
        parts.append(f"{v}: loss - floor {min(gaps):.3f}-{max(gaps):.3f} nats")
    return ok, "; ".join(parts) + (f" (needs < {max_gap:g}: the arm learned the task)" if parts else "")


def _present(groups, variants, fn, name, cmp, bound, learned=(), max_gap=0.2):
    parts, ok = [], True
    for v in variants:
        values = [fn(r) for r in groups.get(v, [])]
        if not values or any(x is None for x in values):
            return False, f"{v}: no {name} probe data"
        ok &= all(cmp(10 ** x) for x in values)
        parts.append(f"{v}: {name} {10 ** min(values):.3g}-{10 ** max(values):.3g}")
    text = "; ".join(parts) + f" (needs {bound} in every run)"
    if learned:
        ok2, text2 = _learned(groups, learned, max_gap)
        ok, text = ok and ok2, text + "; " + text2
    return ok, text


@precondition("resid_peak_present")
def resid_peak_present(groups, variants: list, above: float = 2.0, learned: list = (), max_gap: float = 0.2):
    """Each named variant's residual peak ||h_0|| / median ||h_t|| exceeds `above` in every run (and the
    variants in `learned` reach the entropy floor within max_gap: a mitigation that does not learn proves nothing)."""
    return _present(groups, variants, resid_peak_log10, "residual peak ratio", lambda x: x > above,
                    f"> {above:g}", learned, max_gap)


@precondition("channel_outliers_present")
def channel_outliers_present(groups, variants: list, above: float = 3.0, learned: list = (), max_gap: float = 0.2):
    """Each named variant's top/median residual channel ratio exceeds `above` in every run (and `learned` learned)."""
    return _present(groups, variants, channel_outlier_log10, "top/median channel ratio", lambda x: x > above,
                    f"> {above:g}", learned, max_gap)


@precondition("sinks_and_learned")
def sinks_and_learned(groups, variants: list, learned: list = (), max_gap: float = 0.2):
    """sinks_on_every_seed for `variants`, and the `learned` variants reach the entropy floor within max_gap."""
    ok, text = sinks_on_every_seed(groups, variants)
    ok2, text2 = _learned(groups, learned, max_gap)
    return ok and ok2, text + ("; " + text2 if text2 else "")
