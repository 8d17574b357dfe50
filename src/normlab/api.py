"""The Python / notebook surface: train a run with a progress display, load a finished one back.

    import normlab as nl
    summary = nl.train(nl.load_config("debug"))    # a notebook bar in Jupyter, a rich bar on a terminal, lines otherwise
    run = nl.load_run("runs/debug")                # .config .model .tokenizer .summary .metrics .sample()
Everything here reads the run directory through normlab.rundir (safetensors weights, JSON, YAML;
nothing unpickles), so a run pulled from the Hub loads like a local one.
"""
from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch

from .config import ConfigError, RunConfig
from .data import load_tokenizer
from .model import build_model
from .rundir import latest_checkpoint, load_weights, read_json, read_metrics
from .training import generate_samples, saved_config
from .training import train as _train
from .training.callbacks import Callback
from .training.console import display_callbacks
from .training.trackers import close_open_trackers


def train(cfg: RunConfig, run_dir: str | Path | None = None, *, resume: bool = False, overwrite: bool = False,
          display: str = "auto", until_step: int | None = None, progress: Callable[[int, int], None] | None = None,
          callbacks: list[Callback] = ()) -> dict:
    """Train one run (into run_dir, default <out_dir>/<name>) and return its summary.json dict.

    Args:
        resume: continue the run in run_dir from its last checkpoint.
        overwrite: delete what run_dir holds and start again (re-running a notebook cell).
        display: auto (a notebook bar in Jupyter, the rich bar on a terminal, log lines otherwise),
            notebook, bar, lines or none.
        until_step: stop after this many steps, with a checkpoint (resume=True continues).
        progress: called with (steps done, total) after every step.
    """
    shown = display_callbacks(display)
    try:
        return _train(cfg, run_dir, resume=resume, overwrite=overwrite, until_step=until_step,
                      progress=progress, callbacks=[*shown, *callbacks])
    finally:
        for cb in shown:
            cb.close()
        close_open_trackers()


def by_step(records: list[dict]) -> list[dict]:
    """Records merged into one dict per step, in the order steps first appear; a later record's value wins."""
    rows: dict[object, dict] = {}
    for r in records:
        rows.setdefault(r.get("step"), {}).update(r)
    return list(rows.values())


class Run:
    """A run directory, loaded: config, tokenizer, summary and metrics; the model on first use."""

    def __init__(self, run_dir: str | Path, device: str | torch.device = "cpu"):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / "config.yaml").is_file():
            raise ConfigError(f"{self.run_dir} is not a run directory (no config.yaml); train one with "
                              "nl.train(cfg) or normlab train")
        self.device = torch.device(device)
        self.config: RunConfig = saved_config(self.run_dir)
        self.tokenizer = load_tokenizer(self.run_dir / "tokenizer.json")
        path = self.run_dir / "summary.json"
        self.summary: dict = read_json(path) if path.is_file() else {}

    def __repr__(self) -> str:
        status = self.summary.get("status", "not finished")
        return f"Run({str(self.run_dir)!r}, {status}, val_loss={self.summary.get('val_loss')})"

    @property
    def checkpoint(self) -> Path:
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            raise ConfigError(f"{self.run_dir} has no checkpoint yet; train it (nl.train(cfg, resume=True) or "
                              "normlab train ... --resume)")
        return ckpt

    @property
    def step(self) -> int:
        """The step of the latest checkpoint (the weights .model holds)."""
        return int(self.checkpoint.name.split("_")[-1])

    @cached_property
    def model(self) -> torch.nn.Module:
        """The weights of the latest checkpoint, in eval mode, on `device`."""
        model = build_model(self.config.model)
        load_weights(model, self.checkpoint)
        return model.to(self.device).eval()

    @property
    def metrics(self):
        """metrics.jsonl, one row per step: a pandas DataFrame (NaN where a step lacks a key) if pandas is importable,
        else a list of dicts. A step's records (its loss, an evaluation, probe scalars) are merged into its row, and a
        step recorded twice (a run resumed from a checkpoint before it) keeps its last values."""
        records = read_metrics(self.run_dir / "metrics.jsonl") if (self.run_dir / "metrics.jsonl").exists() else []
        records = by_step(records)
        try:
            import pandas as pd
        except ImportError:
            return records
        return pd.DataFrame.from_records(records)

    def sample(self, n: int = 5, prompt: str = "", temperature: float | None = None, seed: int = 0) -> list[str]:
        """n samples that start with `prompt` (a seq2seq run: its greedy output for `prompt`)."""
        try:
            self.tokenizer.encode(prompt)
        except ValueError as err:
            raise ConfigError(f"prompt {prompt!r}: {err}") from None
        cfg = self.config
        if temperature is not None:
            if not 0 <= temperature <= 100:
                raise ConfigError(f"temperature={temperature!r} must be a number in [0, 100] (0 = greedy)")
            cfg = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, temperature=float(temperature)))
        if cfg.data.task != "lm":
            from .model import inference

            return [inference(self.model, self.tokenizer, prompt, max_length=cfg.model.block_size)]
        texts = generate_samples(self.model, self.tokenizer, cfg, self.device, prompt=prompt, n=n, seed=seed)
        return [t if t.startswith(prompt) else prompt + t for t in texts]


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load a run directory (local, or one `normlab pull` brought back): see Run."""
    return Run(run_dir, device)
