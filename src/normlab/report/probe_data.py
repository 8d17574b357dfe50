"""Probe outputs of run directories -> per-variant arrays -> the generic probe figures of every report.

Reads metrics.jsonl (`probe/<probe>/<key>` scalars) and probes/step_N.npz (`<probe>/<key>` arrays);
writes nothing. `probe_figures(groups)` is what report/build.py adds whenever runs have probe data.
Curves and grids are means over the seeds of a variant (steps missing in a seed, e.g. after a
divergence, are left out of that step's mean).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..train.rundir import read_metrics
from . import plots_probes as pp
from .runs import RunData

_LAYER = re.compile(r"^(?:.*\.)?layer\d+$")


@dataclass
class ProbeRun:
    scalars: dict[str, dict[int, float]] = field(default_factory=dict)   # "attn_entropy/layer0" -> {step: v}
    arrays: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # step -> "attn_entropy/per_head" -> a

    def array(self, key: str, step: int | None = None) -> np.ndarray | None:
        """The array at `step` (default: the last step that has it)."""
        steps = [s for s in sorted(self.arrays) if key in self.arrays[s]]
        if not steps:
            return None
        return self.arrays[step if step in steps else steps[-1]][key]


def load_probes(run_dir: Path) -> ProbeRun | None:
    run_dir = Path(run_dir)
    out = ProbeRun()
    for record in read_metrics(run_dir / "metrics.jsonl"):
        for key, value in record.items():
            if key.startswith("probe/"):
                out.scalars.setdefault(key[6:], {})[record["step"]] = float(value)
    for path in sorted((run_dir / "probes").glob("step_*.npz")):
        with np.load(path) as data:
            out.arrays[int(path.stem[5:])] = {k: data[k] for k in data.files}
    return out if (out.scalars or out.arrays) else None


def layer_series(runs: list[ProbeRun], prefix: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (steps, mean over seeds)} for scalar keys `<prefix>/<layer>`."""
    out = {}
    layers = sorted({k[len(prefix) + 1:] for r in runs for k in r.scalars
                     if k.startswith(prefix + "/") and _LAYER.match(k[len(prefix) + 1:])}, key=_layer_order)
    for layer in layers:
        per_seed = [r.scalars.get(f"{prefix}/{layer}", {}) for r in runs]
        steps = sorted({s for d in per_seed for s in d})
        values = np.array([[d.get(s, np.nan) for s in steps] for d in per_seed], dtype=float)
        with np.errstate(all="ignore"):
            out[layer] = (np.array(steps), _nanmean0(values))
    return out


def _nanmean0(values: np.ndarray) -> np.ndarray:
    ok = np.isfinite(values)
    return np.where(ok.any(0), np.where(ok, values, 0).sum(0) / np.maximum(ok.sum(0), 1), np.nan)


def _layer_order(label: str) -> tuple:
    m = re.search(r"(\d+)$", label)
    return (label[: m.start()] if m else label, int(m.group(1)) if m else -1)


def mean_grid(runs: list[ProbeRun], key: str, step: int | None = None) -> np.ndarray | None:
    grids = [g for g in (r.array(key, step) for r in runs) if g is not None]
    shapes = {g.shape for g in grids}
    if not grids or len(shapes) != 1:
        return grids[0] if grids else None
    with np.errstate(all="ignore"):
        return _nanmean0(np.stack(grids).astype(float))


def chosen_steps(runs: list[ProbeRun], key: str, n: int = 3) -> list[int]:
    """First, middle and last probe step that every seed of the variant has (n of them)."""
    common = set.intersection(*[{s for s, a in r.arrays.items() if key in a} for r in runs]) if runs else set()
    steps = sorted(common)
    if len(steps) <= n:
        return steps
    return [steps[round(i * (len(steps) - 1) / (n - 1))] for i in range(n)]


def by_variant(groups: dict[str, list[RunData]]) -> dict[str, list[ProbeRun]]:
    out = {}
    for variant, runs in groups.items():
        loaded = [p for p in (load_probes(r.run_dir) for r in runs) if p is not None]
        if loaded:
            out[variant] = loaded
    return out


def probe_figures(groups: dict[str, list[RunData]]) -> dict[str, object]:
    """Every probe figure the data allows; {} when no run recorded probes."""
    data = by_variant(groups)
    if not data:
        return {}
    figs = {}
    heat = {v: {s: mean_grid(rs, "attn_entropy/per_head", s) for s in chosen_steps(rs, "attn_entropy/per_head")}
            for v, rs in data.items()}
    heat = {v: g for v, g in heat.items() if g}
    if heat:
        figs["probe_entropy_heads.png"] = pp.grid_heatmaps(heat, "Head-wise attention entropy (nats)", "viridis")
    for name, prefix, title, log in [
            ("probe_entropy_layers.png", "attn_entropy", "Layer-wise attention entropy during training (nats)", False),
            ("probe_nan_attention.png", "nan_counts/attn", "Layer-wise NaN/inf counts in attention probabilities", False),
            ("probe_nan_activations.png", "nan_counts/act", "Layer-wise NaN/inf counts in activations", False),
            ("probe_grad_norms.png", "grad_norms", "Gradient norm per layer (before clipping)", True),
            ("probe_attn_logit_max.png", "logit_stats/attn_max", "Max attention logit q.k/sqrt(D) per layer", False),
            ("probe_massive_top1.png", "massive_activations/top1", "Largest |h| of the residual stream per layer",
             True)]:
        series = {v: layer_series(rs, prefix) for v, rs in data.items()}
        series = {v: s for v, s in series.items() if s}
        if series:
            figs[name] = pp.layer_curves(series, title, log)
    _last_step_figures(data, figs)
    return figs


def _last_step_figures(data: dict[str, list[ProbeRun]], figs: dict) -> None:
    """Figures of the final probe step: sinks, massive activations, norm weights, embedding norms."""
    sinks = {v: {"last": g} for v, rs in data.items() if (g := mean_grid(rs, "attn_sinks/per_head")) is not None}
    if sinks:
        figs["probe_sinks.png"] = pp.grid_heatmaps(sinks, "Attention mass on position 0 (last probe step)", "magma")
    massive = {}
    for v, rs in data.items():
        top, med = mean_grid(rs, "massive_activations/top3"), mean_grid(rs, "massive_activations/median")
        labels = rs[0].array("massive_activations/labels")
        if top is not None and med is not None and labels is not None and len(labels) == len(top):
            massive[v] = (list(labels), top, med)
    if massive:
        figs["probe_massive_activations.png"] = pp.massive_profile(massive)
    weights = {v: _vectors(rs[0], "norm_weights/vec/") for v, rs in data.items()}
    weights = {v: w for v, w in weights.items() if w}
    if weights:
        figs["probe_norm_weights.png"] = pp.norm_weight_profiles(weights)
    rows = {v: _vectors(rs[0], "embedding_norms/rows/") for v, rs in data.items()}
    rows = {v: r for v, r in rows.items() if r}
    if rows:
        figs["probe_embedding_norms.png"] = pp.embedding_histograms(rows)


def _vectors(run: ProbeRun, prefix: str) -> dict[str, np.ndarray]:
    """Arrays under prefix at the run's last probe step (seed 0: per-channel values do not average)."""
    if not run.arrays:
        return {}
    last = run.arrays[max(run.arrays)]
    return {k[len(prefix):]: v for k, v in last.items() if k.startswith(prefix)}
