"""The training loop: train(cfg) -> a finished run directory and its summary.

Reads top to bottom: set up (seed, data, model, optimizer, maybe resume), then per step get the
batch, forward/backward, clip, step; every log_every steps flush buffered losses to metrics.jsonl
(the only host sync) and stop cleanly on a non-finite or out-of-bound loss; evaluate and checkpoint
on their schedules; at the end sample and write summary.json.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import ConfigError, RunConfig, dump_yaml, from_dict, read_yaml
from ..data import IGNORE, Corpus, TokenData, build_corpus
from ..model import build_model
from . import accel, dist
from .checkpoint import latest_checkpoint, save_checkpoint
from .optim import build_optimizer, lr_at, set_lr
from .rundir import MetricsWriter, atomic_write_text, meta, now, read_json, write_json


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


@torch.no_grad()
def evaluate(model, data: TokenData, cfg: RunConfig, device) -> float:
    """Mean loss over a fixed set of validation batches (same batches every call and every run)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(cfg.train.eval_batches):
        b = data.batch(cfg.train.batch_size, seed=cfg.data.split_seed + 7919, step=i)
        y = b.y.to(device)
        n = int((y != IGNORE).sum())
        total += lm_loss(model(b.x.to(device)), y).item() * n
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
        corpus.tokenizer.save(run_dir / "tokenizer.json")
    return cfg, corpus


def train(cfg: RunConfig, run_dir: str | Path | None = None, resume: bool = False,
          until_step: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Train one run; return its summary. `until_step` stops early (as an interruption would)."""
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.out_dir) / cfg.name
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    ranks = dist.init(cfg.train.device)  # torchrun: one process per rank; else a no-op
    device = dist.device_for(ranks, resolve_device(cfg.train.device))
    dist.check_batch(cfg.train, ranks)
    accel.setup_backends(device)
    cfg, corpus = _prepare(cfg, run_dir, resume, write=ranks.is_main)
    dist.barrier(ranks)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).to(device)
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
    state.run(start_step, end_step)
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
        self.buffer: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []
        self.diverged_step: int | None = None
        self.diverged_reason = ""
        self.val_losses: list[tuple[int, float]] = []
        self.last_log_time, self.tokens_since_log = time.perf_counter(), 0
        self.train_time, self.tokens_seen = 0.0, 0

    def run(self, start: int, end: int) -> None:
        t = self.cfg.train
        t0 = time.perf_counter()
        for step in range(start, end):
            self._step(step)
            last = step == end - 1
            if (step + 1) % t.log_every == 0 or last:
                self._flush()
                if self.diverged_step is not None:
                    break
            if (step + 1) % t.eval_every == 0 and step + 1 < t.steps:
                self._eval(step + 1)
            if t.ckpt_every and (step + 1) % t.ckpt_every == 0 and step + 1 < t.steps:
                self.save(step + 1)
            if self.progress and self.ranks.is_main:
                self.progress(step + 1, t.steps)
        self.train_time += time.perf_counter() - t0

    def _step(self, step: int) -> None:
        t = self.cfg.train
        lr = lr_at(step, t)
        set_lr(self.optimizer, lr)
        batch = dist.local_batch(self.corpus.train, t.batch_size, t.seed, step, self.ranks)
        x, y = batch.x.to(self.device, non_blocking=True), batch.y.to(self.device, non_blocking=True)
        with accel.autocast(self.device, t):
            logits = self.step_model(x)
        # The weight makes DDP's gradient average the gradient of the global mean loss (1.0 alone).
        loss = dist.weighted(lm_loss(logits, y, t.z_loss), y, self.ranks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, t.grad_clip or float("inf"))
        grad_norm = dist.plain_tensor(grad_norm)  # FSDP returns a DTensor
        self.optimizer.step()
        if hasattr(self.model, "post_step"):  # e.g. nGPT renormalizes its matrices after every step
            self.model.post_step()
        self.buffer.append((step, loss.detach(), grad_norm.detach(), lr))
        self.tokens_since_log += x.numel() * self.ranks.world

    def _flush(self) -> None:
        """Read buffered values (one host sync per log interval), write them, detect divergence."""
        steps = [s for s, *_ in self.buffer]
        losses = dist.mean_across(torch.stack([l for _, l, _, _ in self.buffer]).float(), self.ranks).tolist()
        norms = torch.stack([g for _, _, g, _ in self.buffer]).float().tolist()
        elapsed = time.perf_counter() - self.last_log_time
        tps = self.tokens_since_log / max(elapsed, 1e-9)
        records = []
        for step, loss, gnorm, (_, _, _, lr) in zip(steps, losses, norms, self.buffer):
            records.append({"step": step, "loss": loss, "lr": lr, "grad_norm": gnorm, "tokens_per_s": tps})
            if self.diverged_step is None and not _finite(loss):
                self.diverged_step, self.diverged_reason = step, f"non-finite loss {loss}"
            bound = self.cfg.train.loss_bound
            if self.diverged_step is None and bound and loss > bound:
                self.diverged_step, self.diverged_reason = step, f"loss {loss:.3g} > train.loss_bound={bound}"
        if self.writer:
            self.writer.write(records)
        self.tokens_seen += self.tokens_since_log
        self.buffer.clear()
        self.last_log_time, self.tokens_since_log = time.perf_counter(), 0

    def _eval(self, step: int) -> float:
        val = evaluate(self.model, self.corpus.val, self.cfg, self.device)
        self.val_losses.append((step, val))
        if self.writer:
            self.writer.write([{"step": step, "val_loss": val}])
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
        }
        if self.diverged_step is None:
            summary["val_loss"] = self._eval(cfg.train.steps)
            self.save(cfg.train.steps)
            samples = generate_samples(self.model, self.corpus.tokenizer, cfg, self.device)  # every rank (FSDP)
            if self.ranks.is_main:
                atomic_write_text(run_dir / "samples.txt", "".join(s + "\n" for s in samples))
        else:
            summary["val_loss"] = None
        if self.ranks.is_main:
            write_json(run_dir / "summary.json", summary)
        return summary


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
