"""Probe outputs of run directories -> per-variant arrays -> the figures every probe declares.

Reads metrics.jsonl (`probe/<probe>/<key>` scalars) and probes/step_N.npz (`<probe>/<key>` arrays);
writes nothing. `probe_figure_jobs(groups)` loops over the probe registry: each probe's `figures` say
what to draw (probes/__init__.py, Figure), so adding a probe adds its figures to every report.
Curves and grids are means over the seeds of a variant (steps missing in a seed, e.g. after a
divergence, are left out of that step's mean).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..rundir import read_metrics, read_npz
from . import plots_probes as pp

_LAYER = re.compile(r"^(?:.*\.)?layer\d+$")


class StepArrays(Mapping):
    """{step: {key: array}} read from probes/step_N.npz on first access, one file at a time: a report that draws no
    per-head or per-channel figure (the summary set) reads none of them (prepost: 165 files, ~1 s)."""

    def __init__(self, paths: dict[int, Path]):
        self._paths, self._read = dict(sorted(paths.items())), {}

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        if step not in self._read:
            self._read[step] = read_npz(self._paths[step])
        return self._read[step]

    def __iter__(self):
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


@dataclass
class ProbeRun:
    scalars: dict[str, dict[int, float]] = field(default_factory=dict)   # "attn_entropy/layer0" -> {step: v}
    arrays: Mapping[int, dict[str, np.ndarray]] = field(default_factory=dict)  # step -> "attn_entropy/per_head" -> a

    def array(self, key: str, step: int | None = None) -> np.ndarray | None:
        """The array at `step` (default: the last step that has it)."""
        steps = [s for s in sorted(self.arrays) if key in self.arrays[s]]
        if not steps:
            return None
        return self.arrays[step if step in steps else steps[-1]][key]


def load_probes(run_dir: Path, metrics: list[dict] | None = None) -> ProbeRun | None:
    run_dir = Path(run_dir)
    out = ProbeRun()
    for record in metrics if metrics is not None else read_metrics(run_dir / "metrics.jsonl"):
        for key, value in record.items():
            if key.startswith("probe/") and isinstance(value, (int, float)):
                out.scalars.setdefault(key[6:], {})[record["step"]] = float(value)
    out.arrays = StepArrays({int(path.stem[5:]): path for path in (run_dir / "probes").glob("step_*.npz")
                             if path.stem[5:].isdigit()})
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
    return _nanmean0(np.stack(grids).astype(float))


def chosen_steps(runs: list[ProbeRun], key: str, n: int = 3) -> list[int]:
    """First, middle and last probe step that every seed of the variant has (n of them)."""
    common = set.intersection(*[{s for s, a in r.arrays.items() if key in a} for r in runs]) if runs else set()
    steps = sorted(common)
    if len(steps) <= n:
        return steps
    return [steps[round(i * (len(steps) - 1) / (n - 1))] for i in range(n)]


def by_variant(groups: dict) -> dict[str, list[ProbeRun]]:
    return {v: loaded for v, runs in groups.items() if (loaded := [r.probes for r in runs if r.probes is not None])}


def probe_figure_jobs(groups: dict, full: tuple[str, ...] | None = None) -> dict:
    """{job name: job}, one job per figure the registered probes declare (report/drawing.py) that the report draws
    in full (`full_figure`): each returns {file: (figure, caption)}, or {} where the data has none. The name
    (`probe:<probe>:<file>`) keys the figure cache (report/figcache.py)."""
    from ..probes import PROBES

    data = by_variant(groups)
    if not data:
        return {}

    def job(name, f):
        def draw():
            fig = _draw(name, f, data)
            return {f.file: (fig, caption_of(f))} if fig is not None else {}
        return draw
    return {f"probe:{name}:{f.file}": job(name, f) for name, cls in PROBES.items() for f in cls.figures
            if full_figure(name, full)}


ALWAYS_FULL = ("nan_counts",)   # what breaks is shown whatever the experiment (a healthy run's: one sentence)


def full_figure(probe: str, full: tuple[str, ...] | None) -> bool:
    """Whether the report draws `probe`'s figures in full: all of them (full None: `--figures all`), else the
    experiment's probe_figures and ALWAYS_FULL; the rest are collapsed into the overview (`overview_job`)."""
    return full is None or probe in full or probe in ALWAYS_FULL


def collapsed_figures(full: tuple[str, ...] | None) -> list[tuple[str, object]]:
    """(probe, Figure) of every registered figure the report does not draw in full."""
    from ..probes import PROBES

    return [(name, f) for name, cls in PROBES.items() for f in cls.figures if not full_figure(name, full)]


OVERVIEW_FILE = "probe_overview.png"
OVERVIEW_CAPTION = ("Every other probe at a glance: each panel is one probe's per-layer curve collapsed to its mean "
                    "over layers (and over seeds), per variant, against the probe step. Panels without data, or "
                    "that would only draw zeros, are left out. The per-layer and per-head figures: `normlab report "
                    "<this folder> --figures all`.")


def overview_job(groups: dict, full: tuple[str, ...] | None):
    """The job drawing one figure for the collapsed probes' per-layer curves, or None when nothing is collapsed."""
    collapsed = [(name, f) for name, f in collapsed_figures(full) if f.kind == "layers"]
    if not collapsed:
        return None

    def draw():
        data = by_variant(groups)
        panels = []
        for probe, f in collapsed:
            key = f"{probe}/{f.key}".rstrip("/")
            curves = {v: c for v, rs in data.items() if (c := _layer_mean(layer_series(rs, key))) is not None}
            if curves and not all(np.all(np.nan_to_num(v) == 0) for _, v in curves.values()):
                panels.append((f.title, curves, f.log))
        return {OVERVIEW_FILE: (pp.probe_overview(panels, list(groups)), OVERVIEW_CAPTION)} if panels else {}
    return draw


def _layer_mean(layers: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, mean over layers) of layer_series' curves; a step some layer lacks averages the layers that have it."""
    if not layers:
        return None
    steps = np.array(sorted({int(s) for st, _ in layers.values() for s in st}))
    grid = np.full((len(layers), len(steps)), np.nan)
    for i, (st, values) in enumerate(layers.values()):
        grid[i, np.searchsorted(steps, st)] = values
    return steps, _nanmean0(grid)


SEED_MEAN = "Each variant's curve or cell is the mean over its seeds."
FIRST_SEED = "Each variant's first seed (per-channel values do not average across seeds)."


def caption_of(f) -> str:
    """A probe figure's caption and what it aggregates: the mean over seeds (layers, heads, profile) or the first
    seed (channels, histograms)."""
    return f"{f.caption.rstrip()} {SEED_MEAN if f.kind in ('layers', 'heads', 'profile') else FIRST_SEED}".strip()


ALL_ZERO = {"nan_counts": "no non-finite values in any layer, at any probe step"}


def _draw(probe: str, f, data: dict[str, list[ProbeRun]]):
    """The figure `f` declares, or None without data, or a sentence (a str) when the figure would only
    draw zeros (a healthy run's NaN counts): empty panels say less than one line of text."""
    key = f"{probe}/{f.key}".rstrip("/")
    if f.kind == "layers":
        series = {v: s for v, rs in data.items() if (s := layer_series(rs, key))}
        if series and _all_zero(series):
            n = sum(len(data[v]) for v in series)
            what = ALL_ZERO.get(probe, "0 in every layer, at every probe step")
            return f"{f.title}: {what} (all {n} runs with probe data)."
        return pp.layer_curves(series, f.title, f.log) if series else None
    if f.kind == "heads":
        return _heads(probe, key, f, data)
    if f.kind == "profile":
        return _massive(probe, data, f.title)
    prefix = key + "/"
    vectors = {v: w for v, rs in data.items() if (w := _vectors(rs[0], prefix))}
    if not vectors:
        return None
    return pp.norm_weight_profiles(vectors, f.title) if f.kind == "channels" else pp.embedding_histograms(vectors)


def _all_zero(series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]) -> bool:
    values = [v for layers in series.values() for _, v in layers.values()]
    return bool(values) and all(v.size and np.all(v == 0) for v in values)


def _heads(probe: str, key: str, f, data: dict[str, list[ProbeRun]]):
    grids = {}
    for v, rs in data.items():
        steps = chosen_steps(rs, key) if f.steps == "spread" else [None]
        g = {s if s is not None else "last": mean_grid(rs, key, s) for s in steps}
        g = {s: a for s, a in g.items() if a is not None}
        if g:
            grids[v] = g
    if not grids:
        return None
    labels = next((list(a) for rs in data.values() for r in rs if (a := r.array(f"{probe}/labels")) is not None),
                  None)
    return pp.grid_heatmaps(grids, f.title, f.cmap, labels=labels, cbar_label=f.title)


def _massive(probe: str, data, title: str):
    out = {}
    for v, rs in data.items():
        top, med = mean_grid(rs, f"{probe}/top3"), mean_grid(rs, f"{probe}/median")
        labels = rs[0].array(f"{probe}/labels")
        if top is not None and med is not None and labels is not None and len(labels) == len(top):
            out[v] = (list(labels), top, med)
    return pp.massive_profile(out, title) if out else None


def _vectors(run: ProbeRun, prefix: str) -> dict[str, np.ndarray]:
    """Arrays under prefix at the run's last probe step (seed 0: per-channel values do not average)."""
    if not run.arrays:
        return {}
    last = run.arrays[max(run.arrays)]
    return {k[len(prefix):]: v for k, v in last.items() if k.startswith(prefix) and v.ndim == 1}
