"""What a person watching `normlab run` sees while the sweep trains: one row per task (a run, or a stack of runs).

On a terminal, a rich table redrawn twice a second (task, runs, step/total, loss, ETA, state) under the lines the
sweep prints; elsewhere (nohup, Slurm, CI, a pipe) one `progress` line as soon as the first step is reported and
then every `every_s` seconds. It is fed by the messages the workers already send the parent (("progress", run,
step, total), throttled to 2 a second a run) and by each run's end; the loss is the last one the run wrote to its
metrics.jsonl (read from the file's tail, so no launcher has to send it).
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

LINE_EVERY_S = 10.0     # a log (not a terminal) gets one progress line this often
LOSS_EVERY_S = 2.0      # a task's loss is read from its runs' metrics.jsonl at most this often
TAIL_BYTES = 65536      # how much of metrics.jsonl's end is read for its last loss
TABLE_ROWS = 12         # a terminal's table shows this many tasks (training first), then one row for the rest
LINE_TASKS = 6          # a progress line names at most this many training tasks (a zoo trains dozens)
LOSS_MEMBERS = 8        # a stack's loss is the mean of its first members' (a 64-member stack reads 8 files)


def last_loss(metrics: Path) -> float | None:
    """The loss of the last step record in a metrics.jsonl (its tail only), or None when there is none yet."""
    try:
        with open(metrics, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail[1:] if len(tail) > 1 and size > TAIL_BYTES else tail):  # the first may be cut
        try:
            record = json.loads(line)
        except ValueError:
            continue
        loss = record.get("loss") if isinstance(record, dict) else None
        if isinstance(loss, (int, float)):
            return float(loss)
    return None


@dataclass
class _Row:
    label: str
    runs: list[str]
    dirs: list[Path]
    total: int
    steps: dict[str, int] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)
    first: tuple[float, int] | None = None      # (time, step) of the first step reported: the ETA's origin
    last: tuple[float, int] | None = None
    loss: float | None = None
    loss_at: float = -math.inf

    @property
    def step(self) -> int:
        live = [self.steps.get(r, 0) for r in self.runs if r not in self.ended]   # one not heard of yet: step 0
        return min(live) if live else max(self.steps.values(), default=0)

    def state(self) -> str:
        if len(self.ended) == len(self.runs):
            kinds = sorted(set(self.ended.values()))
            return ", ".join(kinds)
        return "training" if self.steps else "waiting"

    def eta(self) -> float | None:
        if self.first is None or self.last is None or len(self.ended) == len(self.runs):
            return None
        (t0, s0), (t1, s1) = self.first, self.last
        if s1 <= s0 or t1 <= t0:
            return None
        return (self.total - self.step) * (t1 - t0) / (s1 - s0)


def _count(states) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return list(counts.items())


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class SweepProgress:
    """Rows for a sweep's tasks; `progress` and `done` are the Sweep's callbacks. `mode`: "bar" (a rich live table
    on a terminal), "lines" (periodic lines through `write`) or "none"; "auto" picks bar on a TTY, else lines."""

    def __init__(self, tasks, mode: str = "auto", write: Callable[[str], None] = print,
                 every_s: float = LINE_EVERY_S, clock: Callable[[], float] = time.monotonic):
        if mode == "auto":
            mode = "bar" if sys.stdout.isatty() else "lines"
        self.mode, self.write, self.every_s, self.clock = mode, write, every_s, clock
        self.rows: list[_Row] = []
        self.row_of: dict[str, _Row] = {}
        labels = [t.name for t in tasks]
        for task, label in zip(tasks, labels):
            if labels.count(label) > 1:   # a stack split in two: "pre x3 #1", "pre x3 #2"
                label = f"{label} #{sum(1 for r in self.rows if r.label.startswith(label + ' #')) + 1}"
            row = _Row(label, [r.cfg.name for r in task.runs], [Path(r.run_dir) for r in task.runs],
                       max(r.cfg.train.steps for r in task.runs))
            self.rows.append(row)
            for r in task.runs:
                self.row_of[r.cfg.name] = row
        self.t0 = clock()
        self.next_line = None   # the first line comes with the first reported step
        self.live = None
        self.lock = threading.Lock()   # a terminal's table is drawn by rich's refresh thread

    # the Sweep's callbacks ---------------------------------------------------------------------------------
    def progress(self, run: str, step: int, total: int) -> None:
        row = self.row_of.get(run)
        if row is None:
            return
        now = self.clock()
        with self.lock:
            row.steps[run] = step
            row.total = max(row.total, total)
            if row.first is None:
                row.first = (now, row.step)
            row.last = (now, row.step)
        if self.mode == "lines" and (self.next_line is None or now >= self.next_line):
            self.next_line = now + self.every_s
            self.write(self.line())

    def done(self, run: str, summary: dict) -> None:
        row = self.row_of.get(run)
        if row is not None:
            with self.lock:
                row.ended[run] = str(summary.get("status", "ended"))
                row.loss_at = -math.inf

    # what is shown -----------------------------------------------------------------------------------------
    def _loss(self, row: _Row) -> float | None:
        now = self.clock()
        if now - row.loss_at >= LOSS_EVERY_S and row.steps:
            values = [v for d in row.dirs[:LOSS_MEMBERS] if (v := last_loss(d / "metrics.jsonl")) is not None]
            row.loss = sum(values) / len(values) if values else row.loss
            row.loss_at = now
        return row.loss

    def counts(self) -> tuple[int, int]:
        ended = sum(len(r.ended) for r in self.rows)
        return ended, sum(len(r.runs) for r in self.rows)

    def line(self) -> str:
        with self.lock:
            return self._line()

    def table(self):
        with self.lock:
            return self._table()

    def _line(self) -> str:
        """'  progress 0:00:12 | pre x5 step 400/4000 loss 2.3100 eta 0:01:05 | ... | 5/15 runs ended (1 failed)'."""
        parts = []
        training = [row for row in self.rows if row.state() == "training"]
        for row in training[:LINE_TASKS]:
            loss = self._loss(row)
            parts.append(f"{row.label} step {row.step}/{row.total}" + (f" loss {loss:.4f}" if loss is not None else "")
                         + f" eta {_duration(row.eta())}")
        if len(training) > LINE_TASKS:
            parts.append(f"{len(training) - LINE_TASKS} more training")
        waiting = sum(r.state() == "waiting" for r in self.rows)
        ended, total = self.counts()
        failed = sum(status == "failed" for r in self.rows for status in r.ended.values())
        tail = (f"{ended}/{total} runs ended" + (f" ({failed} failed)" if failed else "")
                + (f", {waiting} task(s) waiting" if waiting else ""))
        return " | ".join([f"  progress {_duration(self.clock() - self.t0)}", *parts, tail])

    def _table(self):
        from rich.table import Table

        ended, total = self.counts()
        table = Table(title=f"training: {ended}/{total} runs ended, {_duration(self.clock() - self.t0)} elapsed",
                      title_justify="left", box=None, pad_edge=False)
        for column, justify in (("task", "left"), ("runs", "right"), ("step", "right"), ("loss", "right"),
                                ("eta", "right"), ("state", "left")):
            table.add_column(column, justify=justify, no_wrap=True)
        order = {"training": 0, "waiting": 1}
        rows = sorted(self.rows, key=lambda r: order.get(r.state(), 2))   # stable: the sweep's order within each
        for row in rows[:TABLE_ROWS]:
            loss = self._loss(row)
            table.add_row(row.label, str(len(row.runs)), f"{row.step}/{row.total}",
                          "" if loss is None else f"{loss:.4f}", _duration(row.eta()) if row.steps else "",
                          row.state())
        if len(rows) > TABLE_ROWS:
            rest = rows[TABLE_ROWS:]
            table.add_row(f"+{len(rest)} more", str(sum(len(r.runs) for r in rest)), "", "", "",
                          ", ".join(f"{n} {state}" for state, n in _count(r.state() for r in rest)))
        return table

    # a terminal's live table -----------------------------------------------------------------------------------
    def __enter__(self):
        if self.mode == "bar":
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self.table(), console=Console(), refresh_per_second=2, transient=True,
                             redirect_stdout=True, redirect_stderr=True, get_renderable=self.table)
            self.live.start()
        return self

    def __exit__(self, *exc) -> bool:
        if self.live is not None:
            self.live.stop()
            self.live = None
        return False


__all__ = ["SweepProgress", "last_loss"]
