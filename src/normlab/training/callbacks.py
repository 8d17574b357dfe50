"""Callbacks: what happens around the steps, each gated by its own *_every (the torchtitan shape).

The loop calls, in list order: `on_start` once, `before_step(step)`, `after_backward(step)` (the
gradients exist, not yet clipped), `after_step(step)` (step `step` is done, so step + 1 steps are),
`on_divergence` when the log saw a bad loss, `on_end` before the summary is written (a callback
adds its summary fields to `run.notes`). Order matters where records are written: probes, then
the log flush, then evaluation and checkpoint (which flush first), then progress.
"""
from __future__ import annotations

import time

from typing import Callable

from ..data import bits_per_byte
from ..rundir import save_checkpoint
from . import dist
from .evaluation import evaluate


class Callback:
    def on_start(self, run) -> None: ...
    def before_step(self, run, step: int) -> None: ...
    def after_backward(self, run, step: int) -> None: ...
    def after_step(self, run, step: int) -> None: ...
    def on_divergence(self, run) -> None: ...
    def on_end(self, run) -> None: ...


def done(step: int, every: int) -> bool:
    """True after the step that completes a multiple of `every` steps (every = 0: never)."""
    return bool(every) and (step + 1) % every == 0


class LogFlush(Callback):
    """Reads the buffered values every train.log_every steps (the step's only host sync) and at the end."""

    def after_step(self, run, step):
        if done(step, run.cfg.train.log_every) or step + 1 == run.end_step:
            run.log.flush()


class Evaluation(Callback):
    """Validation loss (nats/token) and bits per byte every train.eval_every steps; the final one is the summary's."""

    def after_step(self, run, step):
        if done(step, run.cfg.train.eval_every) and step + 1 < run.cfg.train.steps:
            record_eval(run, step + 1)


def record_eval(run, step: int) -> float:
    t0 = time.perf_counter()
    val = evaluate(run.model, run.corpus.val, run.cfg, run.trainer.device)
    run.eval_time += time.perf_counter() - t0
    run.val_losses.append((step, val))
    run.log.add({"step": step, "val_loss": val, "val_bpb": bits_per_byte(val, run.corpus.val.bytes_per_token)})
    return val


class Checkpointing(Callback):
    """A checkpoint every train.ckpt_every steps (0: only at the end and on an interrupt)."""

    def after_step(self, run, step):
        if done(step, run.cfg.train.ckpt_every) and step + 1 < run.cfg.train.steps:
            save(run, step + 1)


def save(run, step: int) -> None:
    """Flush every pending record, then write checkpoint `step` (under FSDP every rank helps gather)."""
    run.log.flush()
    if run.log.diverged:
        return  # never checkpoint a diverged state: resume would continue from it
    if step == run.start_step > 0:
        return  # the checkpoint this run resumed from holds this state; rewriting it would delete it first
    model, opt_state = dist.full_state(run.model, run.trainer.optimizer, run.ranks)
    if run.ranks.is_main:
        import torch

        save_checkpoint(run.run_dir, model, opt_state, {"step": step, "metrics_lines": run.log.lines,
                                                        "timing_lines": run.log.timing_lines},
                        rng=torch.get_rng_state())
    dist.barrier(run.ranks)


class Progress(Callback):
    """Hands (steps done, total) to a progress function (the CLI's bar, the sweep runner's queue)."""

    def __init__(self, fn: Callable[[int, int], None]):
        self.fn = fn

    def after_step(self, run, step):
        if run.ranks.is_main:
            self.fn(step + 1, run.cfg.train.steps)

    def on_divergence(self, run):
        """A diverged run trains no further: report it through, or a stack's progress (the slowest live member)
        stays at its divergence step and the ETA grows while the others train on."""
        if run.ranks.is_main:
            self.fn(run.cfg.train.steps, run.cfg.train.steps)
