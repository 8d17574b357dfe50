"""What a person watching a run sees: log lines, a terminal progress bar, a notebook progress bar.

All three are MetricsLog listeners (they see the records metrics.jsonl gets, at each flush) plus a
callback for the step count. `format_line` is the one line format (nanoGPT / HF Trainer style:
run, step/total, loss, val loss, lr, tokens/s, ETA), so a sweep can print the same lines.
`display_callbacks("auto")` picks: a notebook bar in Jupyter, the rich bar on a terminal, lines
otherwise (nohup, Slurm, CI: on stderr), one every train.print_every steps and one per eval.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable

from .callbacks import Callback

LINES_PER_RUN = 20  # train.print_every = 0: about this many step lines per run


def format_line(name: str, step: int, total: int, loss: float | None = None, val_loss: float | None = None,
                lr: float | None = None, tokens_per_s: float | None = None, eta_s: float | None = None) -> str:
    """'debug | step  20/30 | loss 2.8123 | val_loss 2.9001 | lr 2.10e-03 | 12.3k tok/s | eta 0:00:03'."""
    parts = [name, f"step {step:>{len(str(total))}}/{total}"]
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    if val_loss is not None:
        parts.append(f"val_loss {val_loss:.4f}")
    if lr is not None:
        parts.append(f"lr {lr:.2e}")
    if tokens_per_s:
        parts.append(f"{_si(tokens_per_s)} tok/s")
    if eta_s is not None:
        parts.append(f"eta {_duration(eta_s)}")
    return " | ".join(parts)


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def print_every(train_cfg) -> int:
    """train.print_every, or (0) about LINES_PER_RUN lines rounded up to a multiple of train.log_every."""
    if train_cfg.print_every:
        return train_cfg.print_every
    every = train_cfg.log_every
    return every * max(1, math.ceil(train_cfg.steps / LINES_PER_RUN / every))


class Display(Callback):
    """The state every display shares: loss (mean since the last line), lr, tokens/s and ETA from each flush."""

    def on_start(self, run):
        self.main = run.ranks.is_main
        if not self.main:
            return
        self.name, self.total, self.every = run.run_dir.name, run.cfg.train.steps, print_every(run.cfg.train)
        self.log, self.t0, self.step0 = run.log, time.perf_counter(), run.start_step
        self.pending: list[float] = []
        self.loss = self.lr = None
        self.done = run.start_step
        run.log.listeners.append(self.records)
        self.begin(run)

    def records(self, records: list[dict]) -> None:
        self.done = max([self.done] + [r["step"] + 1 for r in records if "loss" in r])
        for r in records:
            if "loss" in r:
                self.pending.append(r["loss"])
                self.lr = r["lr"]
                if (r["step"] + 1) % self.every == 0 or r["step"] + 1 == self.total:
                    self.step_line(self.line(r["step"] + 1, self._take_loss()))
            elif "val_loss" in r:
                self.eval_line(self.line(r["step"], self._mean(self.pending) if self.pending else self.loss,
                                         r["val_loss"]))
        self.refresh()

    def line(self, step: int, loss: float | None, val_loss: float | None = None) -> str:
        return format_line(self.name, step, self.total, loss, val_loss, self.lr, self.log.last_tokens_per_s,
                           self.eta())

    def eta(self) -> float | None:
        elapsed, steps = time.perf_counter() - self.t0, self.done - self.step0
        return (self.total - self.done) * elapsed / steps if steps > 0 else None

    def _take_loss(self) -> float | None:
        self.loss = self._mean(self.pending)
        self.pending = []
        return self.loss

    @staticmethod
    def _mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    def on_divergence(self, run):
        if self.main:
            step, reason = run.log.diverged
            self.eval_line(f"{self.name} | diverged at step {step}: {reason}")

    def on_end(self, run):
        if self.main and self.records in run.log.listeners:
            run.log.listeners.remove(self.records)
        self.close()

    def begin(self, run) -> None: ...
    def step_line(self, text: str) -> None: ...
    def eval_line(self, text: str) -> None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...


class LogLines(Display):
    """Plain lines for logs that are not a terminal: a header, a line every print_every steps, one per eval.
    They go to stderr, so stdout stays the summary JSON (`normlab train debug > summary.json`)."""

    def __init__(self, write: Callable[[str], None] | None = None):
        self.write = write or (lambda text: print(text, file=sys.stderr, flush=True))

    def begin(self, run):
        resumed = f", resumed at step {run.start_step}" if run.start_step else ""
        self.write(f"{self.name} | {run.model.num_params():,} parameters on {run.trainer.device}, "
                   f"{self.total} steps{resumed} -> {run.run_dir}")

    def step_line(self, text):
        self.write(text)

    eval_line = step_line


class TerminalBar(Display):
    """The rich progress bar on a terminal: steps, loss, tokens/s, time left; eval lines print above it."""

    def __init__(self, console=None):
        self.console, self.bar = console, None

    def begin(self, run):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
                            TimeRemainingColumn(), console=self.console, transient=True)
        self.task = self.bar.add_task(self.name, total=self.total, completed=self.done, loss="-", speed="")
        self.bar.start()

    def after_step(self, run, step):
        if self.bar is not None:
            self.bar.update(self.task, completed=step + 1)

    def refresh(self):
        speed = f"{_si(self.log.last_tokens_per_s)} tok/s" if self.log.last_tokens_per_s else ""
        shown = self.pending[-1] if self.pending else self.loss
        self.bar.update(self.task, loss="-" if shown is None else f"{shown:.4f}", speed=speed)

    def eval_line(self, text):
        self.bar.console.print(text, highlight=False, soft_wrap=True)

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class NotebookBar(Display):
    """tqdm's notebook widget in Jupyter (its text bar when ipywidgets is missing); eval lines print below."""

    def __init__(self):
        self.bar = None

    def begin(self, run):
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm
        except ImportError:
            from tqdm import tqdm
        self.bar = tqdm(total=self.total, initial=self.done, desc=self.name, file=sys.stdout, unit="step")

    def after_step(self, run, step):
        if self.bar is not None:
            self.bar.update(step + 1 - self.bar.n)

    def refresh(self):
        shown = self.pending[-1] if self.pending else self.loss
        fields = {"loss": "-" if shown is None else f"{shown:.4f}"}
        if self.log.last_tokens_per_s:
            fields["tok/s"] = _si(self.log.last_tokens_per_s)
        self.bar.set_postfix(fields, refresh=False)

    def eval_line(self, text):
        self.bar.write(text, file=sys.stdout)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def display_callbacks(kind: str = "auto") -> list[Display]:
    """auto | lines | bar | notebook | none -> the display callbacks for train(..., callbacks=...)."""
    if kind == "auto":
        kind = "notebook" if in_notebook() else ("bar" if sys.stdout.isatty() else "lines")
    if kind == "notebook":
        try:
            import tqdm  # noqa: F401
        except ImportError:
            kind = "lines"  # tqdm comes with the hf extra; lines read fine in a notebook too
    makers = {"lines": LogLines, "bar": TerminalBar, "notebook": NotebookBar, "none": None}
    if kind not in makers:
        from ..config import ConfigError

        raise ConfigError(f"display={kind!r} is not a display; choose one of: auto, {', '.join(makers)}")
    return [makers[kind]()] if makers[kind] else []
