"""The stacked engine: a group of same-shape runs trained as one model (training/stacked.py), each member keeping
its own run directory, through the same loop as a plain run (loop.run_steps).

Every member is set up exactly as it would be alone (training/setup.py: its run directory checks,
data, its own init under its seed, resume from its own checkpoint) and keeps its own callbacks
(evaluation, probes, checkpoints, forensics, log, progress), which see a plain model holding the
member's current weights and a torch optimizer holding its state (synced from the stack when a
callback asks: MemberTrainer). Only the step is shared, and the engine owns what a step measures:
gradient norms (one segmented sum for every member) and the update probes' snapshots. A member that
diverges is frozen, recorded and forensics'd as alone; one that reaches its own train.steps stops;
the others go on. Checkpoints are ordinary single-model checkpoints, so a run trained stacked resumes
alone and the other way round; members resume together when their checkpoints hold the same step
(runs at other steps form their own stack).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

import torch

from ..config import RunConfig
from ..data.batching import shared_corpora
from ..rundir import RunLock, now, write_json
from . import accel
from .loop import Member, conclude, default_callbacks, run_steps, stopped_by_a_write
from .optim import lr_at
from .setup import TrainingRun, setup
from .signals import StopOnInterrupt
from . import stacked_mix
from .stacked import clip_per_member, member_losses, stack_models
from .stacked_grads import GradGroups
from .stacked_optim import build_stacked_optimizer
from .step import StepResult


class Engine:
    """The shared part: the stacked model, its flat parameters, the per-member optimizer, one step.

    Only live members are stacked: when members leave (diverged, or at their own end), the next step first
    re-stacks the rest (`_restack`), so a member that left costs no more compute. A member's row in the
    flat buffer is `rows[k]`; every batched op works per member, so a survivor computes the same bits as in a
    stack of one (test_stacked.py)."""

    def __init__(self, runs: list[TrainingRun]):
        self.runs = runs
        self.device = runs[0].trainer.device
        self.train_cfg = runs[0].cfg.train
        self.version, self._rows = 0, None
        self.gflop = accel.member_gflop(runs[0].trainer.model, 1, self.train_cfg.batch_size)
        mode, why = accel.compile_choice(self.train_cfg, self.device, members=len(runs), gflop=self.gflop)
        for r in runs:   # the stack's step is the one that trains them
            r.notes["compile"] = {"asked": self.train_cfg.compile, "used": mode, "why": why}
        self._build(list(range(len(runs))), [(r.trainer.model, _torch_state(r)) for r in runs])

    def _build(self, members: list[int], states: list[tuple]) -> None:
        """Stack `members` from their plain models and optimizer states (name -> state). Whether to compile is
        decided for the whole stack as it started (len(self.runs)), so a re-stack does not flip it."""
        runs = [self.runs[k] for k in members]
        self.rows = {k: i for i, k in enumerate(members)}
        cfgs = [r.cfg for r in runs]
        models = stacked_mix.unified([m for m, _ in states], cfgs)   # placements differ: the members' union models
        self.model, self.flat = stack_models(models, self.device)
        stacked_mix.mask_slots(self.model, cfgs, self.device)
        self.step_model = accel.accelerate(self.model, self.train_cfg, members=len(self.runs), device=self.device,
                                           gflop=self.gflop)
        self.optimizer = build_stacked_optimizer(self.flat, [r.cfg.train for r in runs], self.device, models[0])
        for i, (_, state) in enumerate(states):
            self.optimizer.load(i, {n: dict(s) for n, s in state.items()})
        col = lambda xs: torch.tensor(xs, dtype=torch.float32, device=self.device)  # noqa: E731
        self.z_loss = col([r.cfg.train.z_loss for r in runs])
        self.max_norm = col([r.cfg.train.grad_clip for r in runs])
        self.grads = GradGroups([m for m, _ in states], self.flat, self.device)

    def _restack(self, live: list[int]) -> None:
        """Every member's weights and Adam state into its plain model (the leaving ones keep theirs there for
        their end), then a stack of the live members only."""
        for k in self.rows:
            self.sync(k)
        from .optim import optimizer_state_by_name

        states = [(self.runs[k].trainer.plain_model,
                   optimizer_state_by_name(self.runs[k].trainer.plain_model, self.runs[k].trainer.plain_optimizer))
                  for k in live]
        self._build(list(live), states)
        self.version += 1
        self._rows = None

    def step(self, step: int, live: list[int], after_backward: Callable[[], None]) -> dict[int, tuple[StepResult, int]]:
        """One optimizer step of the live members; per live member (StepResult, tokens). `after_backward` runs
        the members' callbacks between backward and clipping, as train_step does (probes read gradients there)."""
        if sorted(live) != sorted(self.rows):
            self._restack(live)
        batches = [self.runs[k].batch(step) for k in live]
        lrs = [lr_at(step, self.runs[k].cfg.train) for k in live]
        x = torch.cat([b.x for b in batches]).to(self.device, non_blocking=True)
        y = torch.cat([b.y for b in batches]).to(self.device, non_blocking=True)
        with accel.autocast(self.device, self.train_cfg):
            logits = self.step_model(x)
        losses = member_losses(logits, y, self.flat.E, self.z_loss)
        self.flat.grad.zero_()
        losses.sum().backward()
        grad = self.flat.grad
        self._rows = None
        after_backward()
        norms = self.grads.norms(grad)
        clip_per_member(grad, norms, self.max_norm)
        self.optimizer.step(grad, torch.tensor(lrs, device=self.device), torch.ones(len(live), device=self.device))
        self.version += 1
        losses, norms = losses.detach(), norms.detach()
        return {k: (StepResult(losses[i], norms[i], lrs[i]), b.x.numel())
                for i, (k, b) in enumerate(zip(live, batches))}

    def grad_row(self, k: int) -> torch.Tensor:
        """Member k's grad_norms row of this step (its own model's keys, before clipping); every member's rows are
        computed once, when first asked."""
        if self._rows is None:
            self._rows = self.grads.rows(self.flat.grad)
        return self._rows[self.rows[k]]

    def sync(self, k: int) -> None:
        """Member k's weights and Adam state into its plain model and torch optimizer (a member no longer
        stacked already has them there: _restack put them)."""
        if k not in self.rows:
            return
        run, row = self.runs[k], self.rows[k]
        model, opt = run.trainer.plain_model, run.trainer.plain_optimizer
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.flat.member(self.flat.data, row, name))
        state = self.optimizer.state_of(row)
        params = dict(model.named_parameters())
        for name, s in state.items():
            if name not in params:   # a slot of a mixed stack's union that this member's placement lacks
                continue
            opt.state[params[name]] = {key: (t.to(params[name].device) if key != "step" else t) for key, t in s.items()}


def _torch_state(run: TrainingRun) -> dict:
    from .optim import optimizer_state_by_name

    return optimizer_state_by_name(run.trainer.model, run.trainer.optimizer)


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

    def gradient_tracker(self, probe):
        from ..probes.grad_norms import GradNormTracker

        plain = probe.tracker(self.plain_model)
        if type(plain) is GradNormTracker:   # every member's norms at once (Engine.grad_row)
            return _MemberGradNorms(self.engine, self.k, plain.keys)
        return _MemberGradients(self, plain)

    def update_tracker(self, probe):
        return _Synced(self, probe.tracker(self.plain_model, self.plain_optimizer))


class _MemberGradNorms:
    """Member k's row of the stack's grad_norms (the keys and values GradNormTracker gives a plain run)."""

    def __init__(self, engine: Engine, k: int, keys: list[str]):
        self.engine, self.k, self.keys = engine, k, keys

    def measure(self) -> torch.Tensor:
        return self.engine.grad_row(self.k)


class _MemberGradients:
    """Any other gradients probe: the plain tracker over the member's gradients (views of the flat buffer)."""

    def __init__(self, trainer: MemberTrainer, plain):
        self.trainer, self.plain, self.keys = trainer, plain, plain.keys

    def measure(self):
        flat, k = self.trainer.engine.flat, self.trainer.engine.rows[self.trainer.k]
        params = list(self.trainer.plain_model.named_parameters())
        for name, p in params:
            p.grad = flat.member(flat.grad, k, name)
        try:
            return self.plain.measure()
        finally:
            for _, p in params:
                p.grad = None


class _Synced:
    """An update probe's plain tracker, reading the member's weights and optimizer state synced from the stack
    (at its snapshot after backward: this step's weights; at its measurement: the updated ones)."""

    def __init__(self, trainer: MemberTrainer, plain):
        self.trainer, self.plain, self.keys = trainer, plain, plain.keys

    def snapshot(self) -> None:
        self.trainer._fresh()
        self.plain.snapshot()

    def measure(self):
        self.trainer._fresh()
        return self.plain.measure()


def train_stacked(cfgs: list[RunConfig], run_dirs: list[Path],
                  progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict]:
    """Train runs of one stack key together; {run name: summary}. Runs always resume (as the sweep does)."""
    with contextlib.ExitStack() as stack, StopOnInterrupt() as stop:
        for d in run_dirs:
            stack.enter_context(RunLock(d))
        stack.enter_context(stopped_by_a_write([Path(d) for d in run_dirs]))
        with shared_corpora():   # the members read the same text: tokenize it once
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
    """Members that start at the same step: one engine, the plain loop (loop.run_steps), each member's end."""
    engine, members = Engine(runs), []
    for k, run in enumerate(runs):
        run.trainer = MemberTrainer(run.trainer, engine, k)
        run.end_step = run.cfg.train.steps
        member_progress = (lambda s, n, name=run.cfg.name: progress(name, s, n)) if progress else None
        members.append(Member(run, default_callbacks(run, member_progress)))
        for cb in members[-1].callbacks:
            cb.on_start(run)
    t0 = time.perf_counter()
    reached = run_steps(engine, members, stop)
    stacked = {"members": len(runs), "group_train_time_s": round(time.perf_counter() - t0, 3)}
    results = {}
    for member, steps in zip(members, reached):
        member.run.notes["stacked"] = stacked
        member.run.info["stacked_members"] = len(runs)
        results[member.run.cfg.name] = conclude(member, steps)
    return results


# Keys whose values may differ between the members of one stack: they change no shape and no code path
# of the shared step (each member has its own schedule, clipping, decay, betas, eps, z-loss weight, init
# and callbacks). Everything else (architecture, data, batch, dtype, device, compile) must be equal.
PER_MEMBER = ("name", "out_dir", "train.seed", "train.lr", "train.weight_decay", "train.betas", "train.adam_eps",
              "train.optimizer", "train.momentum", "train.nesterov", "train.muon_momentum", "train.muon_nesterov",
              "train.weight_decay_mode", "train.schedule", "train.warmup_steps", "train.min_lr_frac", "train.grad_clip",
              "train.z_loss", "train.steps", "train.loss_bound", "train.eval_every", "train.eval_batches",
              "train.ckpt_every", "train.log_every", "train.threads", "model.init_std", "model.embed_init_std",
              "model.resid_init_scale",
              "model.depth_scaled_init", "probes.", "sample.")


OPTIMIZER_FAMILY = {"adam": "adam", "adamw": "adam", "sgd": "sgd", "muon": "muon"}


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
    kept["optimizer family"] = OPTIMIZER_FAMILY[cfg.train.optimizer]   # one stacked optimizer per stack
    if stacked_mix.mixable(cfg):   # generic placements share a stack (stacked_mix.py)
        for k in stacked_mix.MIXED_KEYS:
            kept[k] = "generic"
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
