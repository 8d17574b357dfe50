"""The probes callback: every measurement inside the model during training goes through here.

Probes declare their stage (probes/__init__.py): `forward` probes run every probes.every steps
(and at step 0 and after the last step) on a fixed probe batch, under no_grad in eval mode, so the
training step itself is untouched and keeps the fused SDPA kernel; `gradients` probes read .grad
after backward and before clipping every probes.grad_every steps, as device tensors buffered with
the step's record (no extra host sync); `update` probes snapshot the parameters after backward and
measure after the optimizer step every probes.update_every steps (rank 0 only), written as a record
of that step (one host read per measured step). Scalars go to metrics.jsonl as probe/<probe>/<key>,
arrays to probes/step_N.npz as <probe>/<key>.
"""
from __future__ import annotations

import math

from ..probes import PROBES, flatten, probe_model, resolve_names
from ..rundir import read_metrics, write_npz
from .callbacks import Callback, done

PROBE_BATCH_SEED = 104_729  # any fixed number: the probe batch is the same in every run of a corpus


class Probing(Callback):
    def __init__(self, run):
        p = self.p = run.cfg.probes
        names = resolve_names(p.names)
        self.forward = [n for n in names if PROBES[n].stage == "forward"]
        self.trackers = ([run.trainer.gradient_tracker(PROBES[n](p)) for n in names if PROBES[n].stage == "gradients"]
                         if p.grad_every else [])
        self.updaters = ([(n, run.trainer.update_tracker(PROBES[n](p))) for n in names
                          if PROBES[n].stage == "update"] if p.update_every and run.ranks.is_main else [])
        self.batch = self.src = self.targets = self.roles = None
        if p.every and self.forward:
            b = run.corpus.val.batch(p.batch_size, seed=run.cfg.data.split_seed + PROBE_BATCH_SEED, step=0)
            self.batch = b.x.to(run.trainer.device)
            self.targets = b.y.to(run.trainer.device)  # a probe's own loss (e.g. depth_stats' skip cost)
            self.src = b.src.to(run.trainer.device) if getattr(b, "src", None) is not None else None
            roles = getattr(run.corpus.val, "roles", None)   # a synthetic source's position roles (triggers)
            self.roles = roles(b.x).to(run.trainer.device) if roles is not None else None
        self.note: dict = {}
        self.peaks = {f"probe/{n}/{prefix}": key for n in self.forward for key, prefix in PROBES[n].peaks.items()}
        if run.ranks.active and run.cfg.train.parallel == "fsdp":
            self.disable("train.parallel=fsdp: parameters are sharded, so probes and forensics are off")

    def disable(self, reason: str) -> None:
        """No probes at all (FSDP: a probe forward on rank 0 alone would need the other ranks' shards)."""
        self.batch, self.trackers, self.updaters = None, [], []
        self.note["probes_disabled"] = reason

    def on_start(self, run):
        if run.start_step == 0:
            self._probe(run, 0)
        elif self.peaks and run.ranks.is_main:
            # a resumed run's peaks are over all of training: the probe records before the checkpoint are in
            # metrics.jsonl (already cut back to what the checkpoint saw), not in this process's memory
            for record in read_metrics(run.run_dir / "metrics.jsonl"):
                if any(k.startswith("probe/") for k in record):
                    self._track_peaks(record["step"], record)

    def after_backward(self, run, step):
        if self.trackers and step % self.p.grad_every == 0:
            for tracker in self.trackers:
                values = tracker.measure()
                if values is not None:
                    run.log.attach(step, tracker.keys, values)
        if self.updaters and step % self.p.update_every == 0:
            for _, tracker in self.updaters:
                tracker.snapshot()

    def after_step(self, run, step):
        if self.updaters and step % self.p.update_every == 0:
            record = {}
            for name, tracker in self.updaters:
                values = tracker.measure()
                if values is not None:
                    record.update({f"probe/{name}/{k}": v for k, v in zip(tracker.keys, values.tolist())})
            if record:
                run.log.add({"step": step, **record})
        if done(step, self.p.every) or step + 1 == run.cfg.train.steps:
            self._probe(run, step + 1)

    def on_end(self, run):
        run.notes.update(self.note)

    def _track_peaks(self, step: int, scalars: dict) -> None:
        """Max over training of the probes' declared peak quantities, and the first probe step that was not finite."""
        for prefix, key in self.peaks.items():
            values = [v for k, v in scalars.items() if k.startswith(prefix)]
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                self.note[key] = max(self.note.get(key, -math.inf), max(finite))
            if len(finite) < len(values) and f"{key}_nonfinite_step" not in self.note:
                self.note[f"{key}_nonfinite_step"] = step

    def _probe(self, run, step: int) -> None:
        """Forward probes after `step` optimizer steps; only rank 0 records."""
        if self.batch is None or not run.ranks.is_main:
            return
        scalars, arrays = flatten(probe_model(run.model, self.batch, self.forward, self.p, self.src,
                                                   self.targets, self.roles))
        run.log.add({"step": step, **scalars})
        self._track_peaks(step, scalars)
        if arrays:
            write_npz(run.run_dir / "probes" / f"step_{step:06d}.npz", arrays)
