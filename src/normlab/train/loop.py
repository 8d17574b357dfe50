"""The training loop: train(cfg) -> a finished run directory and its summary.

Reads top to bottom: set up (seed, data, model, optimizer, maybe resume), then per step get the
batch, forward/backward, clip, step; every log_every steps flush buffered losses to metrics.jsonl
(the only host sync) and stop cleanly on a non-finite or out-of-bound loss; evaluate and checkpoint
on their schedules; at the end sample and write summary.json. Before step 0 the leakage guard
checks causality on a tiny batch (train/leakage.py); validation is also reported in bits per byte.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import ConfigError, RunConfig, TrainConfig, dump_yaml, from_dict, read_yaml
from ..data import IGNORE, Corpus, bits_per_byte, build_corpus
from ..model import build_model
from . import accel, dist
from .checkpoint import latest_checkpoint, save_checkpoint
from .leakage import check_causality, check_targets, overlap_warning, plausibility_warning
from .optim import build_optimizer, lr_at, set_lr
from .probing import TrainingProbes
from .rundir import MetricsWriter, atomic_write_text, meta, now, read_json, write_json
from .seq2seq import seq2seq_report
from .watch import StabilityWatch


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0) -> torch.Tensor:
    """Mean next-token cross-entropy over non-ignored targets (+ z-loss, PaLM / OLMo form)."""
    flat = logits.float().view(-1, logits.shape[-1])
    loss = F.cross_entropy(flat, targets.view(-1), ignore_index=IGNORE)
    if z_loss:
        keep = targets.view(-1) != IGNORE
        loss = loss + z_loss * torch.logsumexp(flat[keep], dim=-1).pow(2).mean()
    return loss


def model_logits(model, batch, device) -> torch.Tensor:
    """Logits for a batch; a seq2seq batch also hands the model its source sequence."""
    if batch.src is None:
        return model(batch.x.to(device))
    return model(batch.x.to(device), src=batch.src.to(device))


def train_step(model, optimizer, batch, device, step: int, t: TrainConfig,
               after_backward: Callable[[], None] | None = None, step_model=None, params=None,
               ranks: dist.DistInfo | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One optimizer step on a batch; returns (loss, grad norm before clipping, lr) without a host sync.

    The loop and divergence replay (train/forensics.py) both call this, so a replay is the same math.
    `step_model` is the DDP / compiled view of `model` that the forward goes through (default: model).
    """
    lr = lr_at(step, t)
    set_lr(optimizer, lr)
    y = batch.y.to(device, non_blocking=True)
    with accel.autocast(device, t):
        logits = model_logits(model if step_model is None else step_model, batch, device)
    loss = lm_loss(logits, y, t.z_loss)
    if ranks is not None:  # makes DDP's gradient average the gradient of the global mean loss
        loss = dist.weighted(loss, y, ranks)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:  # probes read .grad here, before clipping rescales it
        after_backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters() if params is None else params,
                                               t.grad_clip or float("inf"))
    grad_norm = dist.plain_tensor(grad_norm)  # FSDP returns a DTensor
    optimizer.step()
    if hasattr(model, "post_step"):  # e.g. nGPT renormalizes its matrices after every step
        model.post_step()
    return loss.detach(), grad_norm.detach(), lr


def divergence_reason(loss: float, bound: float) -> str:
    """Why a training loss counts as diverged ("" when it does not)."""
    if not _finite(loss):
        return f"non-finite loss {loss}"
    if bound and loss > bound:
        return f"loss {loss:.3g} > train.loss_bound={bound}"
    return ""


@torch.no_grad()
def evaluate(model, data, cfg: RunConfig, device) -> float:
    """Mean loss over a fixed set of validation batches (same batches every call and every run)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(cfg.train.eval_batches):
        b = data.batch(cfg.train.batch_size, seed=cfg.data.split_seed + 7919, step=i)
        y = b.y.to(device)
        n = int((y != IGNORE).sum())
        total += lm_loss(model_logits(model, b, device), y).item() * n
        count += n
    model.train()
    return total / max(count, 1)


def generate_samples(model, tok, cfg: RunConfig, device, prompt: str = "", n: int | None = None,
                     seed: int | None = None) -> list[str]:
    """Samples start at the boundary token (+ prompt) and end at the next boundary token."""
    model.eval()
    g = torch.Generator(device=device).manual_seed(cfg.train.seed if seed is None else seed)
    max_new = cfg.sample.max_new_tokens or cfg.model.block_size
    start = [tok.bos] + tok.encode(prompt)
    out = []
    for _ in range(cfg.sample.n if n is None else n):
        idx = torch.tensor([start], device=device)
        ids = model.generate(idx, max_new, cfg.sample.temperature, g, stop_token=tok.bos)[0].tolist()
        out.append(tok.decode(ids[1:]).split("\n")[0] if ids else "")
    model.train()
    return out


def _check_resume_compatible(run_dir: Path, cfg: RunConfig) -> None:
    saved = from_dict(RunConfig, read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    for section in ("model", "data"):
        old, new = dataclasses.asdict(getattr(saved, section)), dataclasses.asdict(getattr(cfg, section))
        changed = sorted(k for k in old if old[k] != new[k])
        if changed:
            diffs = ", ".join(f"{section}.{k}: {old[k]!r} -> {new[k]!r}" for k in changed)
            raise ConfigError(f"cannot resume {run_dir}: architecture/data changed ({diffs}); "
                              "start a new run name instead")


def _prepare(cfg: RunConfig, run_dir: Path, resume: bool, write: bool = True) -> tuple[RunConfig, Corpus]:
    corpus = build_corpus(cfg.data, cfg.model.block_size)
    if cfg.model.vocab_size == 0:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=corpus.tokenizer.vocab_size))
    elif cfg.model.vocab_size < corpus.tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's "
                          f"{corpus.tokenizer.vocab_size}; use 0 to take it from the tokenizer")
    if resume and (run_dir / "config.yaml").exists():
        _check_resume_compatible(run_dir, cfg)
    elif not resume and (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose another name")
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
        atomic_write_text(run_dir / "tokenizer.json", corpus.tokenizer.to_json())
    return cfg, corpus


def _guard(model, corpus: Corpus, cfg: RunConfig, device) -> None:
    """Refuse to train a model that sees the future or batches whose targets are not the next token."""
    b = corpus.train.batch(min(2, cfg.train.batch_size), seed=cfg.train.seed, step=0)
    check_targets(b.x, b.y, IGNORE)
    src = b.src.to(device) if getattr(b, "src", None) is not None else None
    check_causality(model, b.x.to(device), cfg.model.vocab_size, src=src)


def train(cfg: RunConfig, run_dir: str | Path | None = None, resume: bool = False,
          until_step: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Train one run; return its summary. `until_step` stops early (as an interruption would)."""
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.out_dir) / cfg.name
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    ranks = dist.init(cfg.train.device)  # torchrun: one process per rank; else a no-op
    device = dist.device_for(ranks, resolve_device(cfg.train.device))
    dist.check_batch(cfg.train, ranks)
    accel.setup_backends(device, cfg.train)
    cfg, corpus = _prepare(cfg, run_dir, resume, write=ranks.is_main)
    dist.barrier(ranks)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).to(device)
    _guard(model, corpus, cfg, device)
    step_model = accel.accelerate(dist.wrap(model, cfg.train, ranks, device), cfg.train)
    optimizer = build_optimizer(model, cfg.train)
    writer = MetricsWriter(run_dir / "metrics.jsonl") if ranks.is_main else None
    start_step = 0
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        start_step = dist.load(ckpt, model, optimizer, cfg.train, ranks)
    info = meta(str(device))
    info["world_size"] = ranks.world
    if ranks.is_main:
        writer.truncate_from(start_step)
        if resume and (run_dir / "meta.json").exists():
            info["start"] = read_json(run_dir / "meta.json").get("start", info["start"])
            info["resumed_at_step"] = start_step
        write_json(run_dir / "meta.json", info)

    state = _Loop(cfg, model, optimizer, corpus, device, writer, run_dir, progress, step_model, ranks)
    end_step = cfg.train.steps if until_step is None else min(until_step, cfg.train.steps)
    with _StopOnInterrupt() as stop:
        end_step = state.run(start_step, end_step, stop)
    if state.diverged_step is None and end_step < cfg.train.steps:
        state.save(end_step)
        summary = {"status": "interrupted", "step": end_step}
    else:
        summary = state.finish()
    if ranks.is_main:
        info.update(status=summary["status"], end=now())
        write_json(run_dir / "meta.json", info)
    dist.barrier(ranks)
    return summary


class _StopOnInterrupt:
    """Turn Ctrl-C into a request the loop honours between steps, so the checkpoint written on the way
    out is consistent (an interrupt inside optimizer.step() would leave half-updated weights)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class _Loop:
    """Mutable training state; `run` is the loop, the helpers are its phases."""

    def __init__(self, cfg, model, optimizer, corpus, device, writer, run_dir, progress, step_model=None,
                 ranks=dist.DistInfo()):
        self.cfg, self.model, self.optimizer, self.corpus = cfg, model, optimizer, corpus
        self.device, self.writer, self.run_dir, self.progress = device, writer, run_dir, progress
        # step_model: what the training step calls (DDP / compiled view of model, sharing its weights);
        # evaluation, sampling and checkpoints use the plain `model`.
        self.step_model, self.ranks = model if step_model is None else step_model, ranks
        self.params = list(model.parameters())  # listed once: walking the module tree costs ~3 ms a step
        self.buffer: list[tuple[int, torch.Tensor, torch.Tensor, float, dict]] = []
        self.watch = StabilityWatch(model) if cfg.train.watch_every else None
        self.diverged_step: int | None = None
        self.diverged_reason = ""
        self.val_losses: list[tuple[int, float]] = []
        self.last_log_time, self.tokens_since_log = time.perf_counter(), 0
        self.train_time, self.tokens_seen = 0.0, 0
        self.probes = TrainingProbes(cfg, model, optimizer, corpus, device, writer, run_dir)
        if ranks.active and cfg.train.parallel == "fsdp":
            self.probes.disable("train.parallel=fsdp: parameters are sharded, so probes and forensics are off")

    def run(self, start: int, end: int, stop: "_StopOnInterrupt | None" = None) -> int:
        """Train steps [start, end); return the step reached (earlier on Ctrl-C, after a whole step)."""
        t = self.cfg.train
        t0 = time.perf_counter()
        for step in range(start, end):
            if stop is not None and stop.requested:
                self._flush()
                end = step
                break
            self.probes.before_step(step)
            self._step(step)
            self.probes.after_step(step)
            last = step == end - 1
            if (step + 1) % t.log_every == 0 or last:
                self._flush()
                if self.diverged_step is not None:
                    self.probes.on_divergence(self.diverged_step, self.diverged_reason)
                    break
            if (step + 1) % t.eval_every == 0 and step + 1 < t.steps:
                self._eval(step + 1)
            if t.ckpt_every and (step + 1) % t.ckpt_every == 0 and step + 1 < t.steps:
                self.save(step + 1)
            if self.progress and self.ranks.is_main:
                self.progress(step + 1, t.steps)
        self.train_time += time.perf_counter() - t0
        return end

    def _step(self, step: int) -> None:
        t = self.cfg.train
        batch = dist.local_batch(self.corpus.train, t.batch_size, t.seed, step, self.ranks)
        watched = self.watch is not None and step % t.watch_every == 0
        if watched:  # the watch hooks record maxima of this step's forward pass only
            self.watch.active = True
        loss, grad_norm, lr = train_step(self.model, self.optimizer, batch, self.device, step, t,
                                         lambda: self.probes.after_backward(step),
                                         step_model=self.step_model, params=self.params, ranks=self.ranks)
        extra = self.watch.pop() if watched else {}
        if watched:
            self.watch.active = False
        self.buffer.append((step, loss, grad_norm, lr, extra))
        self.tokens_since_log += batch.x.numel() * self.ranks.world

    def _flush(self) -> None:
        """Read buffered values (one host sync per log interval), write them, detect divergence."""
        if not self.buffer:
            return
        steps = [s for s, *_ in self.buffer]
        losses = dist.mean_across(torch.stack([b[1] for b in self.buffer]).float(), self.ranks).tolist()
        norms = torch.stack([b[2] for b in self.buffer]).float().tolist()
        elapsed = time.perf_counter() - self.last_log_time
        tps = self.tokens_since_log / max(elapsed, 1e-9)
        grads = self.probes.drain_grad_norms()  # per-step probe scalars, read in the same sync
        records = []
        for step, loss, gnorm, (_, _, _, lr, extra) in zip(steps, losses, norms, self.buffer):
            records.append({"step": step, "loss": loss, "lr": lr, "grad_norm": gnorm, "tokens_per_s": tps,
                            **grads.get(step, {}), **{k: v.item() for k, v in extra.items()}})
            reason = divergence_reason(loss, self.cfg.train.loss_bound)
            if self.diverged_step is None and reason:
                self.diverged_step, self.diverged_reason = step, reason
        if self.writer:
            self.writer.write(records)
        self.tokens_seen += self.tokens_since_log
        self.buffer.clear()
        self.last_log_time, self.tokens_since_log = time.perf_counter(), 0

    def _eval(self, step: int) -> float:
        val = evaluate(self.model, self.corpus.val, self.cfg, self.device)
        self.val_losses.append((step, val))
        bpb = bits_per_byte(val, self.corpus.val.bytes_per_token)
        if self.writer:
            self.writer.write([{"step": step, "val_loss": val, "val_bpb": bpb}])
        return val

    def save(self, step: int) -> None:
        """Checkpoint on rank 0 (under FSDP every rank first helps gather the full state)."""
        model, optimizer = dist.full_state(self.model, self.optimizer, self.ranks)
        if self.ranks.is_main:
            save_checkpoint(self.run_dir, model, optimizer, step)
        dist.barrier(self.ranks)

    def finish(self) -> dict:
        cfg, run_dir = self.cfg, self.run_dir
        from .rundir import read_metrics  # the log holds every step, including those before a resume

        dist.barrier(self.ranks)  # rank 0 has written every record
        metrics = read_metrics(run_dir / "metrics.jsonl")
        losses = [m["loss"] for m in metrics if "loss" in m and _finite(m["loss"])]
        summary = {
            "name": cfg.name, "params": self.model.num_params(), "steps": cfg.train.steps,
            "steps_done": (self.diverged_step + 1) if self.diverged_step is not None else cfg.train.steps,
            "status": "diverged" if self.diverged_step is not None else "complete",
            "diverged_step": self.diverged_step, "diverged_reason": self.diverged_reason or None,
            "final_train_loss": _mean(losses[-max(1, len(losses) // 10):]),
            "min_train_loss": min(losses, default=None),
            "train_time_s": round(self.train_time, 3),
            "tokens_per_s": round(self.tokens_seen / self.train_time, 1) if self.train_time else None,
            **self.probes.summary_fields(),
        }
        summary.update(_watch_maxima(metrics))
        if self.diverged_step is None:
            summary["val_loss"] = self._eval(cfg.train.steps)
            summary.update(self._val_figures(summary["val_loss"]))
            self.save(cfg.train.steps)
            if cfg.data.task == "lm":  # every rank samples (FSDP needs all ranks in each forward)
                samples = generate_samples(self.model, self.corpus.tokenizer, cfg, self.device)
            else:
                accuracy, samples = seq2seq_report(self.model, self.corpus.val, self.device, cfg.sample.n)
                summary.update(accuracy)
            if self.ranks.is_main:
                atomic_write_text(run_dir / "samples.txt", "".join(s + "\n" for s in samples))
        else:
            summary["val_loss"] = None
        summary["warnings"] = [w for w in (plausibility_warning(summary["val_loss"], summary.get("val_bpb"),
                                                                self.corpus.val.stats["byte_entropy_bits"]),
                                           overlap_warning(self.corpus.val.stats)) if w]
        summary["data"] = {"train": self.corpus.train.stats, "val": self.corpus.val.stats}
        if self.watch is not None:
            self.watch.close()
        if self.ranks.is_main:
            write_json(run_dir / "summary.json", summary)
        return summary

    def _val_figures(self, val: float) -> dict:
        bpb = bits_per_byte(val, self.corpus.val.bytes_per_token)
        return {"val_bpb": bpb, "val_ppl": math.exp(min(val, 700.0)),
                "val_bytes_per_token": self.corpus.val.bytes_per_token}


def _watch_maxima(metrics: list[dict]) -> dict:
    """Max over training of the watched quantities (finite values), and the first watched step that was not finite."""
    out = {}
    for key in ("max_attn_logit", "max_act"):
        seen = [(m["step"], m[key]) for m in metrics if key in m]
        finite = [v for _, v in seen if _finite(v)]
        if finite:
            out[key] = max(finite)
        bad = [s for s, v in seen if not _finite(v)]
        if bad:
            out[key + "_nonfinite_step"] = bad[0]
    return out


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
