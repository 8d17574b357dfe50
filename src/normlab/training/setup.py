"""Everything a run needs before its first step: the run directory checks, data, model, optimizer,
the resume point, and the metrics log. `setup(...)` returns a `TrainingRun`; the loop only steps it.

Resume rules (what makes a resumed run equal to an uninterrupted one, or refused):
- the saved config.yaml must equal the new one except for keys that change speed or bookkeeping,
  never what is computed (RESUMABLE_CHANGES); anything else that changed is named in the error;
- the run continues from the checkpoint `latest` points to (the newest step folder when a kill came
  before the first `latest`; a broken pointer is an error, never a silent restart); metrics.jsonl is
  truncated to the lines that checkpoint saw;
- a folder that exists but holds no normlab run is never written into.
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ConfigError, RunConfig, dump_yaml, from_dict, read_yaml, to_dict, validate
from ..data import Corpus, build_corpus
from ..model import build_model
from ..rundir import atomic_write_text, latest_checkpoint, meta, read_json, read_text, write_json
from ..rundir.lock import RUN_FILES
from . import accel, dist
from .leakage import check_causality, check_targets
from .metrics_log import MetricsLog
from .optim import build_optimizer
from .step import Trainer

RESUMABLE_CHANGES = ("name", "out_dir", "train.log_every", "train.ckpt_every", "train.compile", "train.compile_cache",
                     "train.threads", "train.device", "train.fused_optimizer", "train.cpu_malloc", "train.parallel",
                     "train.trackers", "train.print_every", "sample.")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@dataclass
class TrainingRun:
    """A run being trained: its config, directory, data, trainer, log and progress."""
    cfg: RunConfig
    run_dir: Path
    corpus: Corpus
    trainer: Trainer
    log: MetricsLog
    start_step: int
    info: dict
    end_step: int = 0
    notes: dict = field(default_factory=dict)          # extra summary.json fields from callbacks
    val_losses: list = field(default_factory=list)
    train_time: float = 0.0
    eval_time: float = 0.0                              # wall seconds in evaluate() (record_eval)

    @property
    def model(self):
        return self.trainer.model

    @property
    def ranks(self) -> dist.DistInfo:
        return self.trainer.ranks

    @property
    def diverged_step(self) -> int | None:
        return self.log.diverged[0] if self.log.diverged else None

    def batch(self, step: int):
        t = self.cfg.train
        return dist.local_batch(self.corpus.train, t.batch_size, t.seed, step, self.ranks)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "options":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(saved: RunConfig, wanted: RunConfig) -> list[str]:
    """'key: old -> new' for every key that differs and would change what the run computes."""
    old, new = _flat(to_dict(saved)), _flat(to_dict(wanted))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys
            if not any(k == s or (s.endswith(".") and k.startswith(s)) for s in RESUMABLE_CHANGES)]


def saved_config(run_dir: Path) -> RunConfig:
    """A run's config.yaml, refused (naming the file) unless it reads as normlab wrote it: whole (every
    section, the last line complete), valid, with the trained vocabulary size. Keys added to a section by a
    later normlab take their defaults, so older runs still load."""
    path = Path(run_dir) / "config.yaml"
    data = read_yaml(path)
    sections = [f.name for f in dataclasses.fields(RunConfig)]
    missing = [k for k in sections if k not in data]
    if missing or not read_text(path).endswith("\n"):
        raise ConfigError(f"{path}: incomplete ({'no ' + ', '.join(missing) if missing else 'the last line is cut'});"
                          " normlab writes it whole, so it was truncated or edited")
    cfg = from_dict(RunConfig, data, source=str(path))
    if cfg.model.vocab_size < 1:
        raise ConfigError(f"{path}: model.vocab_size={cfg.model.vocab_size}; a trained run records its vocabulary size")
    try:
        validate(cfg, {key: str(path) for key in _flat(data)}, training=False)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return cfg


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a path that is a file, a folder that is not a normlab run, or an existing run without --resume."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a directory; choose another name or out_dir")
    if not run_dir.is_dir() or not any(p.name != ".lock" for p in run_dir.iterdir()):
        return
    if not any((run_dir / m).exists() for m in RUN_FILES):
        raise ConfigError(f"{run_dir} exists and holds files that are not a normlab run; choose another name or "
                          "out_dir (nothing was written)")
    if overwrite:
        for child in run_dir.iterdir():
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    elif not resume:
        raise ConfigError(f"{run_dir} already holds a run: continue it with resume=True (CLI: --resume), start it "
                          "again with overwrite=True (CLI: remove the folder first), or choose another name")


def _prepare(cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[RunConfig, Corpus]:
    corpus = build_corpus(cfg.data, cfg.model.block_size)
    vocab = corpus.tokenizer.vocab_size
    if cfg.model.vocab_size == 0:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=vocab))
    elif cfg.model.vocab_size < vocab:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's {vocab}; "
                          "use 0 to take it from the tokenizer")
    if resume and not (run_dir / "config.yaml").exists() and latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"cannot resume {run_dir}: it has a checkpoint but no config.yaml, so nothing shows that "
                          "this config is the one it was trained with; restore config.yaml or start a new run name")
    if resume and (run_dir / "config.yaml").exists():
        changed = config_changes(saved_config(run_dir), cfg)
        if changed:
            raise ConfigError(f"cannot resume {run_dir}: its config differs in {'; '.join(changed)}. A resumed run "
                              "must compute what the original would have; start a new run name instead")
        trained_on = read_json(run_dir / "meta.json").get("data") if (run_dir / "meta.json").is_file() else None
        if trained_on and corpus.fingerprint and trained_on != corpus.fingerprint:
            raise ConfigError(f"cannot resume {run_dir}: the text behind data.source={cfg.data.source} changed since it "
                              f"started (fingerprint {trained_on}, now {corpus.fingerprint}); restore the file or "
                              "start a new run name")
    return cfg, corpus


def _write_run_files(cfg: RunConfig, run_dir: Path, corpus: Corpus) -> None:
    """config.yaml and tokenizer.json, once everything that can refuse the run has passed (a refused resume
    leaves the run directory as it was)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
    atomic_write_text(run_dir / "tokenizer.json", corpus.tokenizer.to_json())


def _guard(model, corpus: Corpus, cfg: RunConfig, device) -> None:
    """Refuse to train a model that sees the future or batches whose targets are not the next token."""
    b = corpus.train.batch(min(2, cfg.train.batch_size), seed=cfg.train.seed, step=0)
    check_targets(b.x, b.y, -1)
    src = b.src.to(device) if getattr(b, "src", None) is not None else None
    check_causality(model, b.x.to(device), cfg.model.vocab_size, src=src)


def _threads(cfg: RunConfig, run_dir: Path, resume: bool) -> int:
    """train.threads; else, on resume, the count the run started with (meta.json): CPU reductions split by
    thread count, so a run resumed in a sweep with fewer runs left (more threads each) or on another shell
    stays equal to one never stopped. 0 = leave torch's default."""
    if cfg.train.threads or not (resume and (run_dir / "meta.json").is_file()):
        return cfg.train.threads
    threads = read_json(run_dir / "meta.json").get("threads")
    return threads if isinstance(threads, int) and 0 < threads <= 4096 else 0


def setup(cfg: RunConfig, run_dir: Path, resume: bool = False, overwrite: bool = False) -> TrainingRun:
    threads = _threads(cfg, run_dir, resume)
    if threads:
        torch.set_num_threads(threads)
    ranks = dist.init(cfg.train.device)  # torchrun: one process per rank; else a no-op
    device = dist.device_for(ranks, resolve_device(cfg.train.device))
    dist.check_batch(cfg.train, ranks)
    if ranks.is_main:
        check_run_dir(run_dir, resume, overwrite)
    accel.setup_backends(device, cfg.train)
    precision = accel.precision(device, cfg.train)   # refuses bf16 on a CPU without AMX before anything is written
    cfg, corpus = _prepare(cfg, run_dir, resume)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).to(device)
    _guard(model, corpus, cfg, device)
    gflop = accel.member_gflop(model, 1, cfg.train.batch_size)   # what train.compile=auto matches measurements by
    step_model = accel.accelerate(dist.wrap(model, cfg.train, ranks, device), cfg.train, device=device, gflop=gflop)
    optimizer = build_optimizer(model, cfg.train)
    trainer = Trainer(model, optimizer, device, cfg.train, step_model, ranks)
    ckpt = latest_checkpoint(run_dir, need_state=True) if resume else None
    state = dist.load(ckpt, model, optimizer, cfg.train, ranks) if ckpt is not None else {}
    start = state.get("step", 0)
    if start > cfg.train.steps:   # past the end: nothing would train, and the summary would call it complete
        raise ConfigError(f"{ckpt / 'state.json'}: step {start} is past train.steps={cfg.train.steps}; the file was "
                          "edited, or the run belongs to a longer config")
    info = meta(str(device))
    info["world_size"], info["data"] = ranks.world, corpus.fingerprint
    info["precision"] = precision
    if ranks.is_main and resume and (run_dir / "meta.json").exists():
        info["start"] = read_json(run_dir / "meta.json").get("start", info["start"])
        info["resumed_at_step"] = start
    # the first writes: metrics.jsonl cut back to the checkpoint (refused when it holds fewer lines), then the rest
    log = MetricsLog(run_dir, ranks, cfg.train.loss_bound, state.get("metrics_lines", 0),
                     state.get("timing_lines", 0), start_step=start)
    if ranks.is_main:
        _write_run_files(cfg, run_dir, corpus)
        write_json(run_dir / "meta.json", info)
    dist.barrier(ranks)
    run = TrainingRun(cfg, run_dir, corpus, trainer, log, start, info)
    mode, why = accel.compile_choice(cfg.train, device, gflop=gflop)
    run.notes["compile"] = {"asked": cfg.train.compile, "used": mode, "why": why}   # a stack's engine may change it
    return run
