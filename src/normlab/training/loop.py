"""The training loop: train(cfg) -> a finished run directory and its summary.

    setup (setup.py) -> for each step: callbacks before, one engine step (a plain run's train_step, or
    a stack's, stacked_loop.py), callbacks after (probes, log flush + divergence check, evaluation,
    checkpoint, progress) -> summary. Both engines train through `run_steps`: the callbacks cannot
    tell which one runs.
The loop holds the run directory's lock for its whole life (one writer per run) and turns the
first Ctrl-C / SIGTERM into a clean stop after a whole step with a checkpoint (signals.py).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import RunConfig
from ..data import bits_per_byte
from ..rundir import RunLock, atomic_write_text, now, read_metrics, write_json
from ..rundir.checkpoint import kept
from ..rundir.files import WriteError
from .callbacks import Callback, Checkpointing, Evaluation, LogFlush, Progress, record_eval, save
from .engine import StepEngine
from .evaluation import generate_samples
from .forensics import Forensics
from .leakage import overlap_warning, plausibility_warning
from .probing import Probing
from .seq2seq import seq2seq_report
from .setup import TrainingRun, setup
from .signals import StopOnInterrupt
from .step import StepResult, train_step
from .trackers import Trackers


def default_callbacks(run: TrainingRun, progress: Callable[[int, int], None] | None) -> list[Callback]:
    cbs = [Forensics(run), Probing(run), LogFlush(), Evaluation(), Checkpointing()]
    cbs += [Trackers(run.cfg.train.trackers)] if run.cfg.train.trackers else []
    return cbs + ([Progress(progress)] if progress else [])


@dataclass
class Member:
    """One run in training: its state and its callbacks (a plain run is an engine's only member)."""
    run: TrainingRun
    callbacks: list[Callback]


class PlainEngine:
    """One model on its own batches through train_step (DDP / FSDP2, compile, nGPT, encoder-decoder, QK-Clip).
    The stacked engine (stacked_loop.py) answers the same `step` for E members of one shape."""

    def __init__(self, run: TrainingRun):
        self.run = run

    def step(self, step: int, live: list[int], after_backward: Callable[[], None]) -> dict[int, tuple[StepResult, int]]:
        batch = self.run.batch(step)
        result = train_step(self.run.trainer, batch, step, after_backward)
        return {0: (result, batch.x.numel() * self.run.ranks.world)}


def run_steps(engine: StepEngine, members: list[Member], stop: StopOnInterrupt) -> list[int]:
    """Train every member from its start_step to its end_step; each member's steps done (fewer on a stop or
    divergence). A member that diverges or reaches its end leaves; the engine goes on with the rest."""
    reached = [m.run.start_step for m in members]
    live = [k for k, m in enumerate(members) if m.run.start_step < m.run.end_step]
    step = min((members[k].run.start_step for k in live), default=0)
    t0 = time.perf_counter()
    try:
        while live and not stop.requested:
            for k in live:
                for cb in members[k].callbacks:
                    cb.before_step(members[k].run, step)
            results = engine.step(step, live, lambda: [cb.after_backward(members[k].run, step)
                                                       for k in live for cb in members[k].callbacks])
            for k in live:
                run, callbacks = members[k].run, members[k].callbacks
                run.log.add_step(step, *results[k])
                reached[k] = step + 1
                for cb in callbacks:
                    cb.after_step(run, step)
                    if run.log.diverged:
                        for c in callbacks:
                            c.on_divergence(run)
                        break
            live = [k for k in live if not members[k].run.log.diverged and step + 1 < members[k].run.end_step]
            step += 1
    finally:
        for m in members:   # a stack's wall time, shared by its members
            m.run.train_time += (time.perf_counter() - t0) / len(members)
    return reached


def conclude(member: Member, reached: int) -> dict:
    """A member's end: checkpoint and `interrupted` if it stopped early, else the summary of a finished run."""
    run, callbacks = member.run, member.callbacks
    if not run.log.diverged and reached < run.cfg.train.steps:
        save(run, reached)
        summary = {"status": "interrupted", "step": reached}
        for cb in callbacks:
            cb.on_end(run)
    else:
        summary = finish(run, callbacks)
    if run.ranks.is_main:
        run.info.update(status=summary["status"], end=now())
        write_json(run.run_dir / "meta.json", run.info)
    return summary


def train(cfg: RunConfig, run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          until_step: int | None = None, progress: Callable[[int, int], None] | None = None,
          callbacks: list[Callback] = ()) -> dict:
    """Train one run; return its summary. `until_step` stops early (as an interruption would)."""
    import os

    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.out_dir) / cfg.name
    main = os.environ.get("RANK", "0") == "0"
    with (RunLock(run_dir) if main else contextlib.nullcontext()), StopOnInterrupt() as stop, \
            stopped_by_a_write([run_dir]):
        run = setup(cfg, run_dir, resume, overwrite)
        run.end_step = cfg.train.steps if until_step is None else min(until_step, cfg.train.steps)
        member = Member(run, default_callbacks(run, progress) + list(callbacks))
        for cb in member.callbacks:
            cb.on_start(run)
        reached = run_steps(PlainEngine(run), [member], stop)
        return conclude(member, reached[0])


@contextlib.contextmanager
def stopped_by_a_write(run_dirs: list[Path]):
    """A write that fails (a full disk) ends the run with one line: the file, and what each run keeps."""
    try:
        yield
    except WriteError as err:
        raise WriteError(f"{err}; " + "; ".join(kept(d) for d in run_dirs), err.path) from None


def finish(run: TrainingRun, callbacks: list[Callback]) -> dict:
    """Final evaluation, checkpoint and samples of a complete run; summary.json for every ended run."""
    from . import dist

    cfg, run_dir = run.cfg, run.run_dir
    run.log.flush()
    diverged = run.log.diverged
    summary = {"name": cfg.name, "params": run.model.num_params(), "steps": cfg.train.steps,
               "steps_done": diverged[0] + 1 if diverged else cfg.train.steps,
               "status": "diverged" if diverged else "complete",
               "diverged_step": diverged[0] if diverged else None, "diverged_reason": diverged[1] if diverged else None,
               "tokens_seen": (diverged[0] + 1 if diverged else cfg.train.steps) * cfg.train.batch_size
               * cfg.model.block_size,  # positions processed (padding of doc batches included)
               "train_time_s": round(run.train_time, 3),
               "tokens_per_s": round(run.log.tokens_seen / run.train_time, 1) if run.train_time else None}
    if not diverged:
        # checkpoint first: a run killed after it (during the evaluation or the samples) resumes here and
        # repeats the evaluation, so metrics.jsonl gets the final val record once, as in an uninterrupted run
        save(run, cfg.train.steps)
        periodic = run.eval_time   # inside the loop's train_time; the final evaluation is not
        summary["val_loss"] = record_eval(run, cfg.train.steps)
        final_eval = run.eval_time - periodic
        run.log.flush()
        summary.update(val_figures(summary["val_loss"], run.corpus.val.bytes_per_token))
        if cfg.data.task == "lm":  # every rank samples (FSDP needs all ranks in each forward)
            samples = generate_samples(run.model, run.corpus.tokenizer, cfg, run.trainer.device)
        else:
            accuracy, samples = seq2seq_report(run.model, run.corpus.val, run.trainer.device, cfg.sample.n)
            summary.update(accuracy)
        if run.ranks.is_main:
            atomic_write_text(run_dir / "samples.txt", "".join(s + "\n" for s in samples))
    else:
        summary["val_loss"], final_eval = None, 0.0
    dist.barrier(run.ranks)  # rank 0 has written every record
    losses = [m["loss"] for m in read_metrics(run_dir / "metrics.jsonl") if "loss" in m] if run.ranks.is_main else []
    finite = [x for x in losses if math.isfinite(x)]
    summary["final_train_loss"] = _mean(finite[-max(1, len(finite) // 10):])
    summary["min_train_loss"] = min(finite, default=None)
    for cb in callbacks:
        cb.on_end(run)
    summary.update(run.notes)
    summary["eval_time_s"] = round(run.eval_time, 3)
    summary["warnings"] = [w for w in (plausibility_warning(summary["val_loss"], summary.get("val_bpb"),
                                                            run.corpus.val.stats["byte_entropy_bits"]),
                                       overlap_warning(run.corpus.val.stats),
                                       eval_share_warning(run.eval_time, run.train_time + final_eval, cfg.train)) if w] \
        + run.notes.get("warnings", [])
    summary["data"] = {"train": run.corpus.train.stats, "val": run.corpus.val.stats}
    if run.ranks.is_main:
        write_json(run_dir / "summary.json", summary)
    return summary


# summary.json keys that read the clock: the only ones two runs of one config may differ in (resume and stack tests
# compare the rest byte for byte)
WALL_CLOCK_KEYS = ("train_time_s", "eval_time_s", "tokens_per_s")

EVAL_SHARE = 0.10   # evaluations may cost at most this share of a run (issue 28)
FORWARD_SHARE = 1 / 3   # an evaluation batch (forward only) costs about a third of a training step's


def eval_batches_for(steps: int, eval_every: int, share: float = EVAL_SHARE) -> int:
    """The most validation batches that keep a run's evaluations (every eval_every steps and at the end) under
    `share` of its training steps, an evaluation batch counted as FORWARD_SHARE of a step: the rule behind
    eval_share_warning and the shipped experiments' eval_batches (test_eval_share)."""
    evals = steps // eval_every + 1
    return max(1, int(share * steps / (FORWARD_SHARE * evals)))


WARN_AFTER_S = 60.0   # a shorter run's evaluation share is noise in the timer, not a cost worth a warning


def eval_share_warning(eval_s: float, total: float, train_cfg) -> str | None:
    """Evaluations measured at over EVAL_SHARE of the run's wall time `total` (which holds them all), in a run
    of at least WARN_AFTER_S (a few-second run's share would make its summary depend on the timer)."""
    if total < WARN_AFTER_S or eval_s / total <= EVAL_SHARE:
        return None
    return (f"evaluation took {eval_s:.1f} s of {total:.1f} s ({eval_s / total:.0%}); "
            f"train.eval_batches={train_cfg.eval_batches} every {train_cfg.eval_every} steps: "
            f"{eval_batches_for(train_cfg.steps, train_cfg.eval_every)} batches would keep it under "
            f"{EVAL_SHARE:.0%}")


def val_figures(val: float, bytes_per_token: float) -> dict:
    return {"val_bpb": bits_per_byte(val, bytes_per_token), "val_ppl": math.exp(min(val, 700.0)),
            "val_bytes_per_token": bytes_per_token}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
