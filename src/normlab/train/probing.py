"""The training loop's probe helper: forward probes on a fixed batch, per-step grad norms, last-good states.

The loop calls four hooks: before_step (step-0 probe, rolling snapshot), after_backward (grad norms
into a device buffer), after_step (forward probes every probes.every steps), on_divergence
(forensics). Probes run under no_grad in eval mode on their own batch (the first validation batch
of a fixed seed), so the training step itself is untouched and keeps the fused SDPA kernel.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path

import torch

from ..config import RunConfig
from ..probes import flatten, probe_model, resolve_names
from ..probes.grad_norms import GradNormTracker
from .forensics import record_divergence, take_snapshot
from .rundir import write_npz

_PROBE_BATCH_SEED = 104_729  # any fixed number: the probe batch is the same in every run of a corpus


class TrainingProbes:
    def __init__(self, cfg: RunConfig, model, optimizer, corpus, device, writer, run_dir: Path):
        self.cfg, self.p = cfg, cfg.probes
        self.model, self.optimizer, self.corpus, self.device = model, optimizer, corpus, device
        self.writer, self.run_dir = writer, Path(run_dir)
        names = resolve_names(self.p.names)
        self.forward_names = [n for n in names if n != "grad_norms"]
        self.batch = self.src = None
        if self.p.every and self.forward_names:
            seed = cfg.data.split_seed + _PROBE_BATCH_SEED
            batch = corpus.val.batch(self.p.batch_size, seed=seed, step=0)
            self.batch = batch.x.to(device)
            self.src = batch.src.to(device) if getattr(batch, "src", None) is not None else None
        self.grads = GradNormTracker(model) if "grad_norms" in names and self.p.grad_every else None
        self.grad_buffer: list[tuple[int, torch.Tensor]] = []
        self.snapshot_every = max(self.p.snapshot_every, cfg.train.log_every)
        # three states: at divergence detection (up to log_every steps late) one is strictly earlier
        self.snapshots: deque = deque(maxlen=3)
        self.note: dict = {}

    def disable(self, reason: str) -> None:
        """Turn every probe and forensics off (e.g. under FSDP, where a probe forward on rank 0 alone would
        need the other ranks' parameter shards); the reason goes into summary.json."""
        self.batch = self.grads = None
        self.snapshot_every = 0
        self.forensics_off = True
        self.note["probes_disabled"] = reason

    def before_step(self, step: int) -> None:
        if self.batch is not None and step == 0:
            self._probe(0)
        if self.snapshot_every and self.p.forensics and (step % self.snapshot_every == 0 or not self.snapshots):
            self.snapshots.append(take_snapshot(self.model, self.optimizer, step))

    def after_backward(self, step: int) -> None:
        if self.grads is not None and step % self.p.grad_every == 0:
            values = self.grads.measure()
            if values is not None:
                self.grad_buffer.append((step, values))

    def after_step(self, step: int) -> None:
        last = step + 1 == self.cfg.train.steps  # the report's "final" figures show the trained model
        if self.batch is not None and ((step + 1) % self.p.every == 0 or last):
            self._probe(step + 1)

    def drain_grad_norms(self) -> dict[int, dict[str, float]]:
        """{step: {probe/grad_norms/<key>: value}} for the buffered steps (one host sync), buffer emptied."""
        if not self.grad_buffer:
            return {}
        rows = torch.stack([v for _, v in self.grad_buffer]).tolist()
        keys = [f"probe/grad_norms/{k}" for k in self.grads.keys]
        out = {step: dict(zip(keys, row)) for (step, _), row in zip(self.grad_buffer, rows)}
        self.grad_buffer.clear()
        return out

    def _probe(self, step: int) -> None:
        """Probe outputs after `step` optimizer steps: scalars to metrics.jsonl, arrays to probes/step_N.npz."""
        if self.writer is None:  # not rank 0 under torchrun: only rank 0 records
            return
        scalars, arrays = flatten(probe_model(self.model, self.batch, self.forward_names, self.p, self.src))
        self.writer.write([{"step": step, **scalars}])
        if arrays:
            write_npz(self.run_dir / "probes" / f"step_{step:06d}.npz", arrays)

    def on_divergence(self, step: int, reason: str) -> None:
        """Write forensics.json; a failure here is recorded, never allowed to crash the (already lost) run."""
        if not (self.p.forensics and self.snapshots) or getattr(self, "forensics_off", False):
            return
        try:
            record = record_divergence(self.cfg, self.model, self.optimizer, self.corpus.train, self.device,
                                       self.run_dir, list(self.snapshots), step, reason)
            self.note = {"forensics": "forensics.json", "first_bad": record["first_bad"]}
        except Exception as err:  # noqa: BLE001  (the run already diverged; keep its summary)
            self.note = {"forensics_error": f"{type(err).__name__}: {err}"}

    def summary_fields(self) -> dict:
        return dict(self.note)
