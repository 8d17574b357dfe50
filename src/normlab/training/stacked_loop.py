"""Train a group of same-shape runs stacked (training/stacked.py), each member keeping its own run directory.

Every member is set up exactly as it would be alone (training/setup.py: its run directory checks,
data, its own init under its seed, resume from its own checkpoint) and keeps its own callbacks
(evaluation, probes, checkpoints, forensics, log, progress), which see a plain model holding the
member's current weights and a torch optimizer holding its Adam state (synced from the stack when
a callback asks). Only the step is shared. A member that diverges is frozen, recorded and
forensics'd as alone; one that reaches its own train.steps stops; the others go on.
Checkpoints are ordinary single-model checkpoints, so a run trained stacked resumes alone and the
other way round; members resume together when their checkpoints hold the same step (runs at other
steps form their own stack).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

import torch

from ..config import RunConfig
from ..rundir import RunLock, now, write_json
from . import accel
from .callbacks import save
from .loop import default_callbacks, finish, stopped_by_a_write
from .optim import lr_at
from .probing import Probing
from .setup import TrainingRun, setup
from .signals import StopOnInterrupt
from .stacked import StackedAdam, clip_per_member, member_losses, stack_models
from .step import StepResult


class Engine:
    """The shared part: the stacked model, its flat parameters, the per-member optimizer, one step."""

    def __init__(self, runs: list[TrainingRun]):
        self.runs = runs
        self.device = runs[0].trainer.device
        self.train_cfg = runs[0].cfg.train
        self.model, self.flat = stack_models([r.trainer.model for r in runs], self.device)
        self.step_model = accel.accelerate(self.model, self.train_cfg)
        self.adam = StackedAdam(self.flat, [r.cfg.train for r in runs], self.device)
        for k, r in enumerate(runs):
            self.adam.load(k, {n: dict(s) for n, s in _torch_state(r).items()})
        col = lambda xs: torch.tensor(xs, dtype=torch.float32, device=self.device)  # noqa: E731
        self.z_loss = col([r.cfg.train.z_loss for r in runs])
        self.max_norm = col([r.cfg.train.grad_clip for r in runs])
        self.version = 0
        self.grad_keys, self.grad_matrix = _grad_membership(runs[0].trainer.model, self.flat, self.device)

    def step(self, batches, step: int, active: torch.Tensor, grads_for: list[int]) -> tuple:
        """One optimizer step of every active member: (losses [E], grad norms [E], lrs, grad-norm rows)."""
        lrs = [lr_at(step, r.cfg.train) for r in self.runs]
        x = torch.cat([b.x for b in batches]).to(self.device, non_blocking=True)
        y = torch.cat([b.y for b in batches]).to(self.device, non_blocking=True)
        with accel.autocast(self.device, self.train_cfg):
            logits = self.step_model(x)
        losses = member_losses(logits, y, self.flat.E, self.z_loss)
        self.flat.grad.zero_()
        torch.where(active, losses, torch.zeros_like(losses)).sum().backward()
        grad = self.flat.grad.masked_fill_(~active[:, None], 0.0)  # a frozen member's NaNs stay its own
        rows = self._grad_norms(grad) if grads_for else None
        norms = clip_per_member(grad, self.max_norm)
        self.adam.step(grad, torch.tensor(lrs, device=self.device), active.float())
        self.version += 1
        return losses.detach(), norms.detach(), lrs, rows

    def _grad_norms(self, grad: torch.Tensor) -> torch.Tensor:
        """Per-member gradient norms per layer / group / total (the grad_norms probe's keys), [E, K]."""
        sq = grad.float().pow(2)
        # the spans tile [0, P) in order: one segmented sum (half the time of an index_add_ over P elements)
        per_span = torch.segment_reduce(sq, "sum", lengths=self.grad_matrix[0], axis=1)
        # a masked sum, not per_span @ matrix: a matmul's summation order depends on E (a [1, S] row goes to
        # another kernel than [2, S]), so a member resumed alone, a stack of one, got per-layer norms 1 ulp apart
        return (per_span.unsqueeze(-1) * self.grad_matrix[1]).sum(dim=1).sqrt()

    def sync(self, k: int) -> None:
        """Member k's weights and Adam state into its plain model and torch optimizer."""
        run = self.runs[k]
        model, opt = run.trainer.plain_model, run.trainer.plain_optimizer
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.flat.member(self.flat.data, k, name))
        state = self.adam.state_of(k)
        params = dict(model.named_parameters())
        for name, s in state.items():
            opt.state[params[name]] = {key: (t.to(params[name].device) if key != "step" else t) for key, t in s.items()}


def _torch_state(run: TrainingRun) -> dict:
    from .optim import optimizer_state_by_name

    return optimizer_state_by_name(run.trainer.model, run.trainer.optimizer)


def _grad_membership(model, flat, device):
    """The grad_norms probe's keys and (each member's span lengths [E, spans], span x key 0/1 matrix)."""
    from ..probes.grad_norms import GradNormTracker, group_of
    from ..probes.recorder import layer_of

    tracker = GradNormTracker(model, prefix="probe/grad_norms/")
    lengths = torch.tensor([s.numel for s in flat.spans.values()]).expand(flat.E, -1).contiguous()
    matrix = torch.zeros(len(flat.spans), len(tracker.keys))
    names = tracker.names
    for i, (name, s) in enumerate(flat.spans.items()):
        matrix[i, names.index(layer_of(name))] = 1
        matrix[i, names.index(f"group/{group_of(name)}")] = 1
        matrix[i, -1] = 1
    return tracker.keys, (lengths.to(device), matrix.to(device))


class MemberTrainer:
    """What a member's callbacks see as `run.trainer`: a plain model and optimizer, synced from the stack
    on first use after each step (evaluation, probes, checkpoints and snapshots read them)."""

    def __init__(self, trainer, engine: Engine, k: int):
        self.plain_model, self.plain_optimizer = trainer.model, trainer.optimizer
        self.device, self.train, self.ranks = trainer.device, trainer.train, trainer.ranks
        self.engine, self.k, self._synced = engine, k, -1
        self.step_model, self.params = self.plain_model, list(self.plain_model.parameters())

    def _fresh(self):
        if self._synced != self.engine.version:
            self.engine.sync(self.k)
            self._synced = self.engine.version

    @property
    def model(self):
        self._fresh()
        return self.plain_model

    @property
    def optimizer(self):
        self._fresh()
        return self.plain_optimizer


def train_stacked(cfgs: list[RunConfig], run_dirs: list[Path],
                  progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict]:
    """Train runs of one stack key together; {run name: summary}. Runs always resume (as the sweep does)."""
    with contextlib.ExitStack() as stack, StopOnInterrupt() as stop:
        for d in run_dirs:
            stack.enter_context(RunLock(d))
        stack.enter_context(stopped_by_a_write([Path(d) for d in run_dirs]))
        runs = [setup(cfg, Path(d), resume=True) for cfg, d in zip(cfgs, run_dirs)]
        results: dict[str, dict] = {}
        for start in sorted({r.start_step for r in runs}):
            group = [r for r in runs if r.start_step == start]
            results.update(_train_group(group, stop, progress) if not stop.requested else _never_started(group))
        return results


def _never_started(runs: list[TrainingRun]) -> dict[str, dict]:
    """Runs a stop reached before their first step: nothing to save, but meta.json must not say running."""
    for run in runs:
        run.info.update(status="interrupted", end=now())
        write_json(run.run_dir / "meta.json", run.info)
    return {r.cfg.name: {"status": "interrupted", "step": r.start_step} for r in runs}


def _train_group(runs: list[TrainingRun], stop: StopOnInterrupt, progress) -> dict[str, dict]:
    engine = Engine(runs)
    cbs = []
    for k, run in enumerate(runs):
        run.trainer = MemberTrainer(run.trainer, engine, k)
        run.end_step = run.cfg.train.steps
        member_progress = (lambda s, n, name=run.cfg.name: progress(name, s, n)) if progress else None
        cbs.append(default_callbacks(run, member_progress))
        for cb in cbs[-1]:
            if isinstance(cb, Probing):
                cb.stacked_grads = bool(cb.trackers)
                cb.trackers = []   # the stack computes every member's gradient norms at once (Engine._grad_norms)
            cb.on_start(run)
    E, start = len(runs), runs[0].start_step
    done = [r.start_step >= r.end_step for r in runs]
    reached = [r.start_step for r in runs]
    t0 = time.perf_counter()
    for step in range(start, max(r.end_step for r in runs)):
        if stop.requested or all(done):
            break
        live = [k for k in range(E) if not done[k]]
        for k in live:
            for cb in cbs[k]:
                cb.before_step(runs[k], step)
        batches = [runs[k].batch(step) for k in range(E)]
        grads_for = [k for k in live if _wants_grads(cbs[k], runs[k], step)]
        active = torch.tensor([not d for d in done], device=engine.device)
        losses, norms, lrs, rows = engine.step(batches, step, active, grads_for)
        for k in live:
            run = runs[k]
            if k in grads_for:
                run.log.attach(step, engine.grad_keys, rows[k])
            run.log.add_step(step, StepResult(losses[k], norms[k], lrs[k]), batches[k].x.numel())
            reached[k] = step + 1
            for cb in cbs[k]:
                cb.after_step(run, step)
                if run.log.diverged:
                    for c in cbs[k]:
                        c.on_divergence(run)
                    break
            done[k] = bool(run.log.diverged) or step + 1 >= run.end_step
    elapsed = time.perf_counter() - t0
    results = {}
    for k, run in enumerate(runs):
        run.train_time = elapsed / E   # the group's time, shared
        if not run.log.diverged and reached[k] < run.cfg.train.steps:
            save(run, reached[k])
            for cb in cbs[k]:
                cb.on_end(run)
            summary = {"status": "interrupted", "step": reached[k]}
        else:
            run.notes["stacked"] = {"members": E, "group_train_time_s": round(elapsed, 3)}
            summary = finish(run, cbs[k])
        run.info.update(status=summary["status"], end=now(), stacked_members=E)
        write_json(run.run_dir / "meta.json", run.info)
        results[run.cfg.name] = summary
    return results


def _wants_grads(callbacks, run: TrainingRun, step: int) -> bool:
    every = run.cfg.probes.grad_every
    return bool(every) and step % every == 0 and any(getattr(cb, "stacked_grads", False) for cb in callbacks)


# Keys whose values may differ between the members of one stack: they change no shape and no code path
# of the shared step (each member has its own schedule, clipping, decay, betas, eps, z-loss weight, init
# and callbacks). Everything else (architecture, data, batch, dtype, device, compile) must be equal.
PER_MEMBER = ("name", "out_dir", "train.seed", "train.lr", "train.weight_decay", "train.betas", "train.adam_eps",
              "train.optimizer", "train.schedule", "train.warmup_steps", "train.min_lr_frac", "train.grad_clip",
              "train.z_loss", "train.steps", "train.loss_bound", "train.eval_every", "train.eval_batches",
              "train.ckpt_every", "train.log_every", "train.threads", "model.init_std", "model.resid_init_scale",
              "model.depth_scaled_init", "probes.", "sample.")


def stack_key(cfg: RunConfig) -> str | None:
    """A string equal for runs that can train in one stack; None for a run that trains alone (and why not
    is `unstackable(cfg)`)."""
    import json

    from ..config import to_dict
    from .setup import _flat

    if unstackable(cfg):
        return None
    flat = _flat(to_dict(cfg))
    kept = {k: v for k, v in flat.items() if not any(k == p or (p.endswith(".") and k.startswith(p))
                                                       for p in PER_MEMBER)}
    return json.dumps(kept, sort_keys=True, default=str)


def unstackable(cfg: RunConfig) -> str:
    """Why a run cannot join a stack ('' if it can)."""
    m = cfg.model
    if m.arch != "gpt" or m.encoder_layers:
        return "nGPT and the encoder-decoder train alone (their renormalization and source batches are per model)"
    if cfg.data.task != "lm":
        return "seq2seq batches have per-batch widths"
    if cfg.train.qk_clip:
        return "train.qk_clip rescales each model's W_q, W_k from its own forward's max logits after the step"
    return ""
