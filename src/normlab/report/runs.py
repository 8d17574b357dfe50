"""Read finished run directories into plain arrays (the report never trains)."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config.load import read_yaml
from ..train.rundir import read_json, read_metrics


@dataclass
class RunData:
    variant: str
    seed: int
    run_dir: Path
    summary: dict
    loss: np.ndarray                      # per-step training loss (NaN where missing)
    val: list[tuple[int, float]] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    @functools.cached_property
    def config(self) -> dict:
        """The run's resolved config.yaml as a plain dict ({} when there is none), read once."""
        path = self.run_dir / "config.yaml"
        return (read_yaml(path) or {}) if path.exists() else {}


def _split_name(name: str) -> tuple[str, int]:
    variant, _, seed = name.rpartition("-seed")
    return (variant, int(seed)) if variant and seed.isdigit() else (name, 0)


def load_run(run_dir: Path, variant: str | None = None, seed: int | None = None) -> RunData:
    run_dir = Path(run_dir)
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else {"status": "missing"}
    metrics = read_metrics(run_dir / "metrics.jsonl")
    n_steps = summary.get("steps") or (1 + max((m["step"] for m in metrics), default=-1))
    loss = np.full(n_steps, np.nan)
    val = []
    for m in metrics:
        if "loss" in m and m["step"] < n_steps:
            loss[m["step"]] = float(m["loss"])
        if "val_loss" in m:
            val.append((m["step"], float(m["val_loss"])))
    samples_path = run_dir / "samples.txt"
    samples = samples_path.read_text().splitlines() if samples_path.exists() else []
    v, s = _split_name(run_dir.name)
    return RunData(variant or v, s if seed is None else seed, run_dir, summary, loss, val, samples)


def load_experiment_runs(exp_dir: Path) -> tuple[dict, list[RunData]]:
    """experiment.json (written by `normlab run`) lists the runs; without it, every subfolder with a
    summary.json or metrics.jsonl is taken as a run named <variant>-seed<k>."""
    exp_dir = Path(exp_dir)
    info_path = exp_dir / "experiment.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        runs = [load_run(exp_dir / r["dir"], r["variant"], r["seed"]) for r in info["runs"]]
    else:
        dirs = sorted(p for p in exp_dir.iterdir() if p.is_dir() and
                      ((p / "summary.json").exists() or (p / "metrics.jsonl").exists()))
        if not dirs:
            raise FileNotFoundError(f"{exp_dir} has no run directories (folders with summary.json)")
        runs = [load_run(d) for d in dirs]
        info = {"name": exp_dir.name, "title": exp_dir.name, "variants": sorted({r.variant for r in runs})}
    return info, runs


def by_variant(runs: list[RunData], order: list[str]) -> dict[str, list[RunData]]:
    out = {v: [] for v in order}
    for r in runs:
        out.setdefault(r.variant, []).append(r)
    return {v: sorted(rs, key=lambda r: r.seed) for v, rs in out.items() if rs}


def stack_losses(runs: list[RunData]) -> np.ndarray:
    """seeds x steps, padded with NaN to the longest run."""
    n = max(len(r.loss) for r in runs)
    out = np.full((len(runs), n), np.nan)
    for i, r in enumerate(runs):
        out[i, : len(r.loss)] = r.loss
    return out
