"""Divergence forensics: find where a run first went bad, and replay it deterministically.

During training the loop keeps a few in-memory last-good states (`take_snapshot`). When the loss goes
non-finite or over train.loss_bound at step s, `record_divergence` restores the latest state from
before s, saves it to forensics/last_good/, and re-trains steps k..s on the same batches with a
forward hook on every module: the first module (in execution order) whose output is non-finite (or
above probes.act_bound) is the first bad layer/sublayer. Recording every training step this way
would cost the hooks on every step, so it is done only here. forensics.json + forensics.npz keep the
step, the reason, max |activation| per layer and module, and the batch indices of steps k..s
(Batch.index, for TokenData.replay). `replay_run` (`normlab replay <run-dir>`) does the same from disk
in a fresh process and says whether the failure reproduces: same step, same first bad module.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, RunConfig, from_dict, read_yaml
from ..probes import Probe, Recorder
from ..probes.recorder import layer_of
from .checkpoint import load_checkpoint, save_state
from .rundir import read_json, write_json, write_npz


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


def per_layer(rows) -> tuple[dict[str, float], dict[str, int]]:
    max_abs, bad = {}, {}
    for name, m, n in rows:
        layer = layer_of(name)
        old = max_abs.get(layer, float("nan"))
        max_abs[layer] = m if old != old else (old if m != m else max(old, m))  # NaN = nothing finite yet
        bad[layer] = bad.get(layer, 0) + n
    return max_abs, bad


def replay_steps(cfg: RunConfig, model, optimizer, data, indices: dict[int, torch.Tensor], start: int,
                 stop: int, device) -> dict:
    """Train steps start..stop on the saved batches from the current state; stop at the first bad loss."""
    from .loop import divergence_reason, train_step  # the loop imports this module

    first_grad = None
    named = list(model.named_parameters())
    for step in range(start, stop + 1):
        batch = data.replay(indices[step])
        bad_params = [n for n, p in named if not torch.isfinite(p).all()]

        def check_grads(step=step):
            nonlocal first_grad
            if first_grad is None:
                bad = [n for n, p in named if p.grad is not None and not torch.isfinite(p.grad).all()]
                first_grad = ({"step": step, "layers": sorted({layer_of(n) for n in bad}), "params": bad[:10]}
                              if bad else None)
        with Recorder(model, [ActivationTrace(cfg.probes)]) as rec:
            loss, _, _ = train_step(model, optimizer, batch, device, step, cfg.train,
                                    check_grads)
        reason = divergence_reason(float(loss), cfg.train.loss_bound)
        if reason or step == stop:
            rows = rec.summary()["activation_trace"]["rows"]
            max_abs, n_bad = per_layer(rows)
            return {"step": step if reason else None, "reason": reason, "loss": float(loss),
                    "first_bad": first_bad(rows, cfg.probes.act_bound), "max_abs_per_layer": max_abs,
                    "nonfinite_per_layer": n_bad, "first_nonfinite_grad": first_grad,
                    "nonfinite_params": bad_params[:10], "rows": rows}
    raise ValueError(f"empty replay range {start}..{stop}")


def record_divergence(cfg: RunConfig, model, optimizer, data, device, run_dir: Path, snapshots: list[Snapshot],
                      step: int, reason: str) -> dict:
    """Restore the last state before `step`, save it, replay to `step`, write forensics.json/.npz."""
    earlier = [s for s in snapshots if s.step < step] or [s for s in snapshots if s.step <= step]
    snap = max(earlier, key=lambda s: s.step)
    restore(snap, model, optimizer)
    run_dir = Path(run_dir)
    save_state(run_dir / "forensics" / "last_good", model, optimizer, snap.step)
    t = cfg.train
    indices = {s: data.batch(t.batch_size, t.seed, s).index for s in range(snap.step, step + 1)}
    found = replay_steps(cfg, model, optimizer, data, indices, snap.step, step, device)
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


def replay_run(run_dir: str | Path) -> dict:
    """Reload forensics/last_good of a diverged run, replay to the failing batch, compare with forensics.json."""
    from ..data import build_corpus
    from ..model import build_model
    from .loop import resolve_device
    from .optim import build_optimizer

    run_dir = Path(run_dir)
    if not (run_dir / "forensics.json").exists():
        raise ConfigError(f"{run_dir} has no forensics.json: only a run that diverged with probes.forensics=true "
                          "has one (see its summary.json)")
    cfg = from_dict(RunConfig, read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    record = read_json(run_dir / "forensics.json")
    threads = read_json(run_dir / "meta.json").get("threads") if (run_dir / "meta.json").exists() else None
    if threads:  # CPU reductions may split differently with another thread count
        torch.set_num_threads(threads)
    device = resolve_device(cfg.train.device)
    data = build_corpus(cfg.data, cfg.model.block_size).train
    model = build_model(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.train)
    start = load_checkpoint(run_dir / record["checkpoint"], model, optimizer)
    saved = np.load(run_dir / "forensics.npz")
    indices = {s: torch.from_numpy(saved[f"batch_index/step_{s:06d}"]) for s in range(start, record["step"] + 1)}
    same_data = all(torch.equal(data.batch(cfg.train.batch_size, cfg.train.seed, s).index, idx)
                    for s, idx in indices.items())
    found = replay_steps(cfg, model, optimizer, data, indices, start, record["step"], device)
    same_step = found["step"] == record["step"]
    same_layer = (found["first_bad"] or {}).get("module") == (record["first_bad"] or {}).get("module")
    return {"reproduced": same_step and same_layer, "same_step": same_step, "same_first_bad": same_layer,
            "same_batches": same_data, "recorded": {k: record[k] for k in ("step", "reason", "first_bad")},
            "replayed": {k: found[k] for k in ("step", "reason", "first_bad", "max_abs_per_layer",
                                               "first_nonfinite_grad", "nonfinite_params")},
            "last_good_step": start}
