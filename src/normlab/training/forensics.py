"""Divergence forensics: find where a run first went bad, and replay it deterministically.

During training the callback keeps a few in-memory last-good states. When the log sees a
non-finite loss (or one over train.loss_bound) at step s, `record_divergence` restores the latest
state from before s, saves it to forensics/last_good/ (a checkpoint in the safetensors format),
and re-trains steps k..s on the same batches with a forward hook on every module: the first module
(in execution order) whose output is non-finite (or above probes.act_bound) is the first bad
layer/sublayer; a finite blow-up (a loss over the bound with every value finite) is located by the first
module whose max |activation| jumped JUMP-fold in that step (first_jump). forensics.json + forensics.npz keep the step, the reason, max |activation| per
layer and module, and the batch indices of steps k..s. `replay_run` (`normlab replay <run-dir>`)
does the same from disk in a fresh process and says whether the failure reproduces: same step,
same first bad module. Everything it reads is validated; nothing is unpickled.
"""
from __future__ import annotations

import copy
import dataclasses
from collections import deque
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, RunConfig
from ..probes import Probe, Recorder
from ..probes.recorder import layer_of
from ..rundir import inside, load_state, read_json, read_npz, save_state, write_json, write_npz
from .callbacks import Callback
from .optim import build_optimizer, load_optimizer_state, optimizer_state_by_name
from .step import Trainer, divergence_reason, train_step


@dataclasses.dataclass
class Snapshot:
    step: int               # the state after `step` optimizer steps, before step `step` runs
    model: dict
    optimizer: dict
    rng: torch.Tensor


def take_snapshot(model, optimizer, step: int) -> Snapshot:
    return Snapshot(step, {k: v.detach().clone() for k, v in model.state_dict().items()},
                    copy.deepcopy(optimizer.state_dict()), torch.get_rng_state())


def restore(snap: Snapshot, model, optimizer) -> None:
    model.load_state_dict(snap.model)
    optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
    torch.set_rng_state(snap.rng)


class ActivationTrace(Probe):
    """Every module's output: max |finite value| and the count of non-finite values, in execution order."""

    name = "activation_trace"
    patterns = ("**",)

    def reduce(self, view):
        rows = []
        for name, t in view.outputs.items():
            if not t.is_floating_point():
                continue
            ok = torch.isfinite(t)
            finite_max = float(t.abs()[ok].max()) if ok.any() else float("nan")  # nan: nothing finite
            rows.append((name, finite_max, int((~ok).sum())))
        return {"rows": rows}


def first_bad(rows: list[tuple[str, float, int]], act_bound: float) -> dict | None:
    for name, max_abs, n_bad in rows:
        if n_bad or (act_bound and max_abs > act_bound):
            parts = name.split(".")
            layer = layer_of(name)
            sub = parts[2] if layer.startswith("layer") and len(parts) > 2 else parts[0]
            return {"module": name, "layer": layer, "sublayer": sub,
                    "kind": "non-finite" if n_bad else f"|a| > probes.act_bound={act_bound}"}
    return None


JUMP = 4.0   # a module whose max |activation| grew this much in one step has blown up (a clean step: < 2x)


def first_jump(before: list[tuple[str, float, int]], rows: list[tuple[str, float, int]]) -> dict | None:
    """The first module (in execution order) whose output went non-finite or whose max |finite value| grew
    at least JUMP-fold from the step before: where a finite blow-up starts (first_bad needs a non-finite
    value or probes.act_bound, and a loss over train.loss_bound may have neither)."""
    prev = {name: m for name, m, _ in before}
    for name, m, n_bad in rows:
        old = prev.get(name)
        if old is None or old != old or not old > 0:
            continue
        ratio = float("inf") if n_bad else m / old
        if ratio >= JUMP:
            layer = layer_of(name)
            parts = name.split(".")
            return {"module": name, "layer": layer,
                    "sublayer": parts[2] if layer.startswith("layer") and len(parts) > 2 else parts[0],
                    "growth": ratio if n_bad == 0 else None, "max_abs": m, "max_abs_before": old,
                    "kind": "non-finite" if n_bad else f"|a| grew {ratio:.3g}x in one step"}
    return None


def per_layer(rows) -> tuple[dict[str, float], dict[str, int]]:
    max_abs, bad = {}, {}
    for name, m, n in rows:
        layer = layer_of(name)
        old = max_abs.get(layer, float("nan"))
        max_abs[layer] = m if old != old else (old if m != m else max(old, m))  # NaN = nothing finite yet
        bad[layer] = bad.get(layer, 0) + n
    return max_abs, bad


def replay_steps(cfg: RunConfig, tr: Trainer, data, indices: dict[int, torch.Tensor], start: int, stop: int) -> dict:
    """Train steps start..stop on the saved batches from the current state; stop at the first bad loss."""
    first_grad, before = None, []
    named = list(tr.model.named_parameters())
    for step in range(start, stop + 1):
        batch = data.replay(indices[step])
        bad_params = [n for n, p in named if not torch.isfinite(p).all()]

        def check_grads(step=step):
            nonlocal first_grad
            if first_grad is None:
                bad = [n for n, p in named if p.grad is not None and not torch.isfinite(p.grad).all()]
                first_grad = ({"step": step, "layers": sorted({layer_of(n) for n in bad}), "params": bad[:10]}
                              if bad else None)
        with Recorder(tr.model, [ActivationTrace(cfg.probes)]) as rec:
            result = train_step(tr, batch, step, check_grads)
        loss = float(result.loss)
        reason = divergence_reason(loss, cfg.train.loss_bound)
        rows = rec.summary()["activation_trace"]["rows"]
        if reason or step == stop:
            max_abs, n_bad = per_layer(rows)
            return {"step": step if reason else None, "reason": reason, "loss": loss,
                    "first_bad": first_bad(rows, cfg.probes.act_bound), "first_jump": first_jump(before, rows),
                    "max_abs_per_layer": max_abs,
                    "nonfinite_per_layer": n_bad, "first_nonfinite_grad": first_grad,
                    "nonfinite_params": bad_params[:10], "rows": rows}
        before = rows
    raise ValueError(f"empty replay range {start}..{stop}")


def record_divergence(run, snapshots: list[Snapshot], step: int, reason: str) -> dict:
    """Restore the last state before `step`, save it, replay to `step`, write forensics.json/.npz."""
    tr, cfg, data = run.trainer, run.cfg, run.corpus.train
    earlier = [s for s in snapshots if s.step < step] or [s for s in snapshots if s.step <= step]
    snap = max(earlier, key=lambda s: s.step)
    restore(snap, tr.model, tr.optimizer)
    run_dir = Path(run.run_dir)
    save_state(run_dir / "forensics" / "last_good", tr.model, optimizer_state_by_name(tr.model, tr.optimizer),
               {"step": snap.step, "metrics_lines": 0}, torch.get_rng_state())
    t = cfg.train
    indices = {s: data.batch(t.batch_size, t.seed, s).index for s in range(snap.step, step + 1)}
    plain = Trainer(tr.model, tr.optimizer, tr.device, t)  # forensics replays on the plain module
    found = replay_steps(cfg, plain, data, indices, snap.step, step)
    record = {"step": step, "reason": reason, "last_good_step": snap.step,
              "checkpoint": "forensics/last_good", "batch_index": indices[step].tolist(),
              "replayed_in_process": {"step": found["step"], "same_step": found["step"] == step},
              **{k: v for k, v in found.items() if k not in ("step", "rows")}}
    write_json(run_dir / "forensics.json", record)
    rows = found["rows"]
    write_npz(run_dir / "forensics.npz", {
        **{f"batch_index/step_{s:06d}": idx.numpy() for s, idx in indices.items()},
        "modules": np.array([r[0] for r in rows], dtype=np.str_),
        "max_abs": np.array([r[1] for r in rows]), "nonfinite": np.array([r[2] for r in rows])})
    return record


class Forensics(Callback):
    """Keeps a rolling last-good state every probes.snapshot_every steps; on divergence writes forensics.json."""

    def __init__(self, run):
        p = run.cfg.probes
        self.enabled = p.forensics and run.ranks.is_main and not (run.ranks.active and run.cfg.train.parallel == "fsdp")
        self.every = max(p.snapshot_every, run.cfg.train.log_every)
        # three states: at divergence detection (up to log_every steps late) one is strictly earlier
        self.snapshots: deque = deque(maxlen=3)
        self.note: dict = {}

    def before_step(self, run, step):
        if self.enabled and self.every and (step % self.every == 0 or not self.snapshots):
            self.snapshots.append(take_snapshot(run.model, run.trainer.optimizer, step))

    def on_divergence(self, run):
        """A failure here is recorded, never allowed to crash the (already lost) run."""
        if not (self.enabled and self.snapshots):
            return
        step, reason = run.log.diverged
        try:
            record = record_divergence(run, list(self.snapshots), step, reason)
            self.note = {"forensics": "forensics.json", "first_bad": record["first_bad"],
                         "first_jump": record["first_jump"], "first_nonfinite_grad": record["first_nonfinite_grad"]}
        except Exception as err:  # noqa: BLE001  (the run already diverged; keep its summary)
            self.note = {"forensics_error": f"{type(err).__name__}: {err}"}

    def on_end(self, run):
        run.notes.update(self.note)


def _record(run_dir: Path) -> dict:
    """forensics.json, checked field by field (it is read from a directory that may come from the Hub)."""
    path = run_dir / "forensics.json"
    record = read_json(path)
    for key in ("step", "last_good_step"):
        if not isinstance(record.get(key), int) or record[key] < 0:
            raise ConfigError(f"{path}: `{key}` must be a non-negative integer")
    if record["last_good_step"] > record["step"] or record["step"] - record["last_good_step"] > 100_000:
        raise ConfigError(f"{path}: last_good_step {record['last_good_step']} does not lie shortly before "
                          f"step {record['step']}")
    if not isinstance(record.get("first_bad"), (dict, type(None))) or not isinstance(record.get("reason"), str):
        raise ConfigError(f"{path}: `first_bad` must be an object or null and `reason` a string")
    return record


def replay_run(run_dir: str | Path) -> dict:
    """Reload forensics/last_good of a diverged run, replay to the failing batch, compare with forensics.json."""
    from ..data import build_corpus
    from ..model import build_model
    from .setup import resolve_device, saved_config

    run_dir = Path(run_dir)
    if not (run_dir / "forensics.json").exists():
        raise ConfigError(f"{run_dir} has no forensics.json: only a run that diverged with probes.forensics=true "
                          "has one (see its summary.json)")
    cfg = saved_config(run_dir)
    record = _record(run_dir)
    ckpt = inside(run_dir, record.get("checkpoint", ""), f"{run_dir / 'forensics.json'} checkpoint")
    threads = read_json(run_dir / "meta.json").get("threads") if (run_dir / "meta.json").exists() else None
    if isinstance(threads, int) and 0 < threads <= 4096:  # CPU reductions may split differently with another count
        torch.set_num_threads(threads)
    device = resolve_device(cfg.train.device)
    data = build_corpus(cfg.data, cfg.model.block_size).train
    model = build_model(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.train)
    state, by_name, rng = load_state(ckpt, model)
    load_optimizer_state(model, optimizer, by_name, str(ckpt / "state.safetensors"))
    start = state["step"]
    if start != record["last_good_step"]:
        raise ConfigError(f"{ckpt}: holds step {start}, forensics.json says the last good step is "
                          f"{record['last_good_step']}")
    saved = read_npz(run_dir / "forensics.npz")
    indices = {}
    for s in range(start, record["step"] + 1):
        key = f"batch_index/step_{s:06d}"
        if key not in saved or saved[key].dtype.kind not in "iu" or saved[key].ndim != 1:
            raise ConfigError(f"{run_dir / 'forensics.npz'}: no integer batch index {key}")
        indices[s] = torch.from_numpy(saved[key].astype(np.int64))
        try:
            data.replay(indices[s])
        except (IndexError, RuntimeError, ValueError):
            raise ConfigError(f"{run_dir / 'forensics.npz'}: {key} holds indices outside this run's data") from None
    same_data = all(torch.equal(data.batch(cfg.train.batch_size, cfg.train.seed, s).index, idx)
                    for s, idx in indices.items())
    found = replay_steps(cfg, Trainer(model, optimizer, device, cfg.train), data, indices, start, record["step"])
    same_step = found["step"] == record["step"]
    same_layer = (found["first_bad"] or {}).get("module") == (record["first_bad"] or {}).get("module")
    return {"reproduced": same_step and same_layer, "same_step": same_step, "same_first_bad": same_layer,
            "same_batches": same_data, "recorded": {k: record.get(k) for k in ("step", "reason", "first_bad")},
            "replayed": {k: found[k] for k in ("step", "reason", "first_bad", "first_jump", "max_abs_per_layer",
                                               "first_nonfinite_grad", "nonfinite_params")},
            "last_good_step": start}
