"""Read run directories into plain arrays (the report never trains; it reads run-directory files only)."""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..config.load import read_yaml
from ..rundir import read_json, read_metrics, read_text


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
        return self.summary.get("status", "missing")

    @property
    def finished(self) -> bool:
        return self.status in ("complete", "diverged")

    @functools.cached_property
    def config(self) -> dict:
        """The run's resolved config.yaml as a plain dict ({} when there is none), read once."""
        path = self.run_dir / "config.yaml"
        if not path.exists():
            return {}
        if not read_text(path).endswith("\n"):  # normlab writes it whole: a cut last line means a cut file
            raise ConfigError(f"{path}: incomplete (the last line is cut); the file was truncated")
        return read_yaml(path) or {}

    @functools.cached_property
    def metrics(self) -> list[dict]:
        return read_metrics(self.run_dir / "metrics.jsonl")

    @functools.cached_property
    def probes(self):
        """Probe scalars and arrays of the run (report/probe_data.py), or None without probe data."""
        from .probe_data import load_probes

        return load_probes(self.run_dir, self.metrics)

    @property
    def task(self) -> str:
        return (self.config.get("data") or {}).get("task", "lm")

    @property
    def vocab_size(self) -> int:
        return int((self.config.get("model") or {}).get("vocab_size") or 0)

    @property
    def ln_vocab(self) -> float:
        """The loss of a uniform prediction over the vocabulary (nats)."""
        return math.log(self.vocab_size) if self.vocab_size > 1 else float("nan")


def _split_name(name: str) -> tuple[str, int]:
    variant, _, seed = name.rpartition("-seed")
    return (variant, int(seed)) if variant and seed.isdigit() else (name, 0)


def load_run(run_dir: Path, variant: str | None = None, seed: int | None = None) -> RunData:
    run_dir = Path(run_dir)
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else {"status": "missing"}
    metrics = read_metrics(run_dir / "metrics.jsonl")
    steps = summary.get("steps")
    n_steps = steps if isinstance(steps, int) and 0 < steps < 10 ** 9 else 1 + max((m["step"] for m in metrics),
                                                                                  default=-1)
    loss = np.full(max(n_steps, 0), np.nan)
    val = []
    for m in metrics:
        if "loss" in m and 0 <= m["step"] < n_steps and isinstance(m["loss"], (int, float)):
            loss[m["step"]] = float(m["loss"])
        if "val_loss" in m and isinstance(m["val_loss"], (int, float)):
            val.append((m["step"], float(m["val_loss"])))
    _check_complete(run_dir, summary, metrics)
    samples_path = run_dir / "samples.txt"
    samples = samples_path.read_text(encoding="utf-8", errors="replace").splitlines() if samples_path.exists() else []
    v, s = _split_name(run_dir.name)
    run = RunData(variant or v, s if seed is None else seed, run_dir, summary, loss, val, samples)
    run.__dict__["metrics"] = metrics  # cached_property: read once
    return run


def _check_complete(run_dir: Path, summary: dict, metrics: list[dict]) -> None:
    """A finished run wrote a record for every step it did: fewer means metrics.jsonl was cut or damaged
    (a torn last line alone would only hide steps), and its curves would silently stop early."""
    done = summary.get("steps_done")
    if summary.get("status") not in ("complete", "diverged") or not isinstance(done, int) or done < 1:
        return
    path = run_dir / "metrics.jsonl"
    have = len({m["step"] for m in metrics if "loss" in m and 0 <= m["step"] < done})
    if have < done:
        raise ConfigError(f"{path}: holds {have} of the {done} step records that summary.json counts; the file "
                          "was truncated or damaged")
    with open(path, "rb") as f:  # the run ended after its last flush, so its last line is whole
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            raise ConfigError(f"{path}: ends in a torn line after the run finished (step records: {have}); the "
                              "file was damaged")


def is_run_dir(folder: Path) -> bool:
    """A run directory (config.yaml and its metrics or summary), not an experiment folder of runs."""
    folder = Path(folder)
    return (folder / "config.yaml").is_file() and ((folder / "summary.json").is_file()
                                                    or (folder / "metrics.jsonl").is_file())


def load_experiment_runs(exp_dir: Path) -> tuple[dict, list[RunData]]:
    """experiment.json (written by `normlab run`) lists the runs; without it, a run directory is a report of that
    one run, and otherwise every subfolder with a summary.json or metrics.jsonl is taken as a run named
    <variant>-seed<k>."""
    exp_dir = Path(exp_dir)
    info_path = exp_dir / "experiment.json"
    if info_path.exists():
        info = read_json(info_path)
        listed = info.get("runs")
        if not isinstance(listed, list) or not all(isinstance(r, dict) and isinstance(r.get("dir"), str)
                                                   for r in listed):
            raise ConfigError(f"{info_path}: `runs` must be a list of {{variant, seed, dir}} objects")
        from ..rundir import inside

        runs = [load_run(inside(exp_dir, r["dir"], f"{info_path} run dir"), r.get("variant"), r.get("seed"))
                for r in listed]
    elif is_run_dir(exp_dir):   # `normlab report RUN_DIR`: one run's curves, probes and samples, written beside it
        run = load_run(exp_dir)
        runs = [run]
        info = {"name": exp_dir.name, "title": f"Run {exp_dir.name}", "variants": [run.variant], "seeds": [run.seed],
                "single_run": True}
    else:
        dirs = sorted(p for p in exp_dir.iterdir() if p.is_dir() and
                      ((p / "summary.json").exists() or (p / "metrics.jsonl").exists()))
        if not dirs:
            raise ConfigError(f"{exp_dir} has no run directories (folders with summary.json or metrics.jsonl)")
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
