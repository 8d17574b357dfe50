"""The one place records are collected: buffered on the device, read with one host sync per flush.

Every record (a step's loss, lr and grad norm, its per-step probe tensors, an evaluation, a probe
pass) is appended to one buffer in the order it happens and written to metrics.jsonl at a flush,
so the file's content and order depend only on the config (not on timing, not on where a
checkpoint or a log boundary fell in wall-clock time). A flush also detects divergence (the first
non-finite loss, or one above train.loss_bound) and writes throughput to timing.jsonl. Listeners
(trackers, console logs) receive each flushed batch of records.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ..rundir import MetricsWriter
from . import dist
from .step import StepResult, divergence_reason


class MetricsLog:
    def __init__(self, run_dir: Path, ranks: dist.DistInfo, loss_bound: float, start_lines: int | None = None,
                 timing_lines: int | None = None, start_step: int | None = None):
        self.ranks, self.loss_bound = ranks, loss_bound
        self.writer = MetricsWriter(Path(run_dir) / "metrics.jsonl") if ranks.is_main else None
        self.timing = MetricsWriter(Path(run_dir) / "timing.jsonl") if ranks.is_main else None
        if self.writer is not None and start_lines is not None:
            self.writer.truncate_to(start_lines, steps=start_step)
            self.timing.truncate_to(min(timing_lines or 0, self.timing.lines), validate=False)  # wall clock only
        self._buffer: list[dict] = []           # records; a step record holds device tensors until the flush
        self._extra: dict[int, list[tuple[list[str], torch.Tensor]]] = {}
        self.diverged: tuple[int, str] | None = None
        self.listeners: list[Callable[[list[dict]], None]] = []
        self.tokens_seen, self._tokens, self._t0 = 0, 0, time.perf_counter()
        self.last_tokens_per_s = 0.0

    @property
    def lines(self) -> int:
        return self.writer.lines if self.writer is not None else 0

    @property
    def timing_lines(self) -> int:
        return self.timing.lines if self.timing is not None else 0

    def attach(self, step: int, keys: list[str], values: torch.Tensor) -> None:
        """Extra per-step values (e.g. gradient norms per layer) for the record of `step`."""
        self._extra.setdefault(step, []).append((keys, values))

    def add_step(self, step: int, result: StepResult, tokens: int) -> None:
        self._buffer.append({"step": step, "loss": result.loss, "lr": result.lr, "grad_norm": result.grad_norm,
                             "_extra": self._extra.pop(step, [])})
        self._tokens += tokens

    def add(self, record: dict) -> None:
        """A record of host values (evaluation, probe scalars), kept in order with the step records."""
        self._buffer.append(record)

    def flush(self) -> None:
        if not self._buffer:
            return
        steps = [r for r in self._buffer if "_extra" in r]
        records = self._read(steps)
        for r in steps:
            reason = divergence_reason(r["loss"], self.loss_bound)
            if reason and self.diverged is None:
                self.diverged = (r["step"], reason)
        if self.writer is not None:
            self.writer.write(records)
        self._account(steps)
        for listener in self.listeners:
            listener(records)
        self._buffer.clear()

    def _read(self, steps: list[dict]) -> list[dict]:
        """Turn the step records' tensors into floats with one transfer (and one all-reduce of the losses)."""
        if steps:
            losses = dist.mean_across(torch.stack([r["loss"] for r in steps]).float(), self.ranks)
            parts = [losses, torch.stack([r["grad_norm"] for r in steps]).float()]
            parts += [v.float().flatten() for r in steps for _, v in r["_extra"]]
            flat = torch.cat(parts).tolist()
            n = len(steps)
            pos = 2 * n
            for i, r in enumerate(steps):
                r["loss"], r["grad_norm"] = flat[i], flat[n + i]
                for keys, _ in r.pop("_extra"):
                    r.update(zip(keys, flat[pos:pos + len(keys)]))
                    pos += len(keys)
        return list(self._buffer)

    def _account(self, steps: list[dict]) -> None:
        """Throughput since the last flush (wall clock: timing.jsonl, never metrics.jsonl)."""
        if not steps:
            return
        elapsed = time.perf_counter() - self._t0
        self.last_tokens_per_s = self._tokens / max(elapsed, 1e-9)
        if self.timing is not None:
            self.timing.write([{"step": steps[-1]["step"], "tokens_per_s": self.last_tokens_per_s,
                                "seconds": elapsed}])
        self.tokens_seen += self._tokens
        self._tokens, self._t0 = 0, time.perf_counter()
