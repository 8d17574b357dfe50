"""Experiment trackers (TensorBoard, trackio, Weights & Biases) behind one small interface.

A tracker is a MetricsLog listener: it gets every flushed record (the same records, in the same
order, as metrics.jsonl, which stays the source of truth) and the resolved config as hyperparameters
at start. An experiment groups its runs (the run directory's parent holds experiment.json): W&B
group and trackio project = that folder's name, TensorBoard <exp_dir>/tensorboard/<run name>; a
single run logs to <run dir>/tensorboard. A tracker that raises is closed and named in
summary.json's warnings; training goes on. Each package is an optional extra (normlab[<name>]).
A resume sends no record twice: TensorBoard purges past the checkpoint itself, the others skip what
trackers.json (metrics.jsonl lines sent, per tracker) says they already hold.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import netrc
import os
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..config import ConfigError, RunConfig, to_dict
from ..rundir import read_json, write_json
from .callbacks import Callback

DEFAULT_PROJECT = "normlab"  # W&B project, and trackio project of a run outside an experiment


@dataclass
class TrackerRun:
    """What a tracker needs to know about the run it logs."""
    name: str                   # the run directory's name (variant-seed in an experiment)
    run_dir: Path
    group: str | None           # the experiment folder's name; None for a single run
    tensorboard_dir: Path
    config: dict                # the resolved config, nested
    start_step: int             # > 0 when the run resumes from a checkpoint
    run_id: str                 # stable across resumes of this run directory


class Tracker:
    """The interface: start (config as hyperparameters), log (a flushed list of records), close."""
    package = ""                # the module that must be importable (its extra is normlab[<tracker name>])
    purges_on_resume = False    # True: start() itself drops what an earlier session logged past the checkpoint

    def start(self, run: TrackerRun) -> None: ...
    def log(self, records: list[dict]) -> None: ...
    def close(self) -> None: ...


class TensorBoard(Tracker):
    package = "tensorboard"
    purges_on_resume = True

    def start(self, run):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # purge_step hides older sessions' events at or after it (TensorBoard's rule): a resume keeps what its
        # checkpoint saw (the probe and eval records at start_step included); a fresh start hides an overwritten run
        purge = run.start_step + 1 if run.start_step else 0
        self.writer = SummaryWriter(str(run.tensorboard_dir), purge_step=purge)
        flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(run.config).items()}
        for summary in hparams(flat, {}):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in flat.items()), run.start_step)

    def log(self, records):
        for r in records:
            for key, value in scalars(r).items():
                self.writer.add_scalar(key, value, r["step"])

    def close(self):
        self.writer.close()


class Trackio(Tracker):
    package = "trackio"

    def start(self, run):
        import trackio

        with contextlib.redirect_stdout(sys.stderr):  # its banner must not mix into the CLI's summary JSON
            self.run = trackio.init(project=run.group or DEFAULT_PROJECT, name=run.name,
                                    config=flatten(run.config),
                                    resume="allow" if run.start_step else "never", embed=False,
                                    auto_log_cpu=False, auto_log_gpu=False)

    def log(self, records):
        for r in records:
            self.run.log(scalars(r), step=r["step"])

    def close(self):
        import trackio

        current = getattr(getattr(trackio, "context_vars", None), "current_run", None)
        with contextlib.redirect_stdout(sys.stderr):
            if current is not None and current.get() is self.run:
                trackio.finish()  # also forgets it as the current run, so trackio's atexit does not finish it again
            else:
                self.run.finish()


class WandB(Tracker):
    package = "wandb"

    def start(self, run):
        import wandb

        mode = os.environ.get("WANDB_MODE") or ("online" if has_wandb_key() else "offline")
        # console="off": W&B must not wrap stdout, where the console lines and the CLI's summary go
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT), group=run.group,
                              name=run.name, id=run.run_id, resume="allow" if run.start_step else None,
                              dir=str(run.run_dir), config=run.config, mode=mode, reinit="create_new",
                              settings=wandb.Settings(console="off", x_disable_stats=True, quiet=True))

    def log(self, records):
        for r in records:
            self.run.log(scalars(r), step=r["step"])

    def close(self):
        self.run.finish()


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoard, "trackio": Trackio, "wandb": WandB}


def has_wandb_key() -> bool:
    """An API key in the environment or ~/.netrc (where `wandb login` puts it); without one W&B runs offline."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def scalars(record: dict) -> dict[str, float]:
    """Every number of a metrics.jsonl record except its step."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def tracker_run(run) -> TrackerRun:
    run_dir = Path(run.run_dir)
    in_experiment = (run_dir.parent / "experiment.json").is_file()
    tb = run_dir.parent / "tensorboard" / run_dir.name if in_experiment else run_dir / "tensorboard"
    # meta.json's start survives resumes and changes on overwrite: one tracker run per training run
    key = f"{run_dir.resolve()}|{run.info.get('start', '')}"
    return TrackerRun(run_dir.name, run_dir, run_dir.parent.name if in_experiment else None, tb, to_dict(run.cfg),
                      run.start_step, hashlib.sha1(key.encode()).hexdigest()[:16])


class Trackers(Callback):
    """Starts the configured trackers, hands them each flushed batch of records, closes them at the end."""
    open: weakref.WeakSet = weakref.WeakSet()  # started and not yet closed (see close_open_trackers)

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.active: dict[str, Tracker] = {}

    def on_start(self, run):
        if not run.ranks.is_main:
            return
        self.run, info = run, tracker_run(run)
        for name in self.names:
            tracker = TRACKERS[name]()
            if self._guard(name, tracker, "start", lambda: tracker.start(info)):
                self.active[name] = tracker
        # A run killed after a checkpoint had sent its trackers records that the resume cuts from metrics.jsonl and
        # computes again, bit for bit. trackers.json counts the metrics.jsonl lines each tracker has been sent, so
        # those records are not sent twice (trackio would hold them twice; W&B refuses them with a warning).
        self.sent_path = Path(run.run_dir) / "trackers.json"
        self.sent = {name: 0 for name in self.names}
        if run.start_step and self.sent_path.is_file():
            self.sent.update(self._read_sent())
        self.position = run.log.lines   # where in metrics.jsonl the next flushed record goes
        run.log.listeners.append(self.log)
        Trackers.open.add(self)

    def _read_sent(self) -> dict[str, int]:
        """trackers.json's counts; a damaged file costs duplicates in the dashboards (warned), never the resume."""
        try:
            sent = read_json(self.sent_path)
            if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sent.values()):
                return {k: v for k, v in sent.items() if k in self.sent}
            problem = f"{self.sent_path}: expected a count of lines per tracker, e.g. {{\"trackio\": 42}}"
        except ConfigError as err:
            problem = str(err)
        self._warn(f"{problem}; records since the checkpoint may reach the trackers twice")
        return {}

    def _warn(self, message: str) -> None:
        """Into summary.json's warnings and onto stderr now."""
        self.run.notes.setdefault("warnings", []).append(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def log(self, records: list[dict]) -> None:
        start, self.position = self.position, self.position + len(records)
        for name, tracker in list(self.active.items()):
            fresh = records if tracker.purges_on_resume else records[max(0, self.sent[name] - start):]
            if not fresh or self._guard(name, tracker, "log", lambda: tracker.log(fresh)):
                self.sent[name] = max(self.sent[name], self.position)
        write_json(self.sent_path, self.sent)

    def on_end(self, run):
        if self.log in run.log.listeners:
            run.log.listeners.remove(self.log)
        for name, tracker in list(self.active.items()):
            self._guard(name, tracker, "close", tracker.close)
        self.active.clear()
        Trackers.open.discard(self)

    def _guard(self, name: str, tracker: Tracker, phase: str, fn) -> bool:
        """Run one tracker call; a tracker that raises is closed and dropped with a warning, never the run."""
        try:
            fn()
            return True
        except Exception as err:  # noqa: BLE001  (a third-party tracker must never stop training)
            first = (str(err).strip().splitlines() or [""])[0][:200]
            self._warn(f"tracker {name} failed at {phase} ({type(err).__name__}: {first}); it was closed, training went on")
            self.active.pop(name, None)
            if phase != "close":
                try:
                    tracker.close()
                except Exception:  # noqa: BLE001  (already reported; a half-started tracker may not close)
                    pass
            return False


def close_open_trackers() -> None:
    """Close trackers whose run raised before on_end (train() closes them on every normal end, stop and divergence)."""
    for trackers in list(Trackers.open):
        trackers.on_end(trackers.run)


def _trackers_are_known_and_installed(cfg: RunConfig) -> str | None:
    names = cfg.train.trackers
    for name in names:
        if name not in TRACKERS:
            return (f"train.trackers={names!r}: {name!r} is not a tracker; choose from "
                    f"{', '.join(TRACKERS)} (a list, e.g. train.trackers=[tensorboard])")
        if names.count(name) > 1:
            return f"train.trackers={names!r} names {name} twice"
        package = TRACKERS[name].package
        if importlib.util.find_spec(package) is None:
            return (f"train.trackers: {name} needs the {package} package, which is not installed; "
                    f"pip install 'normlab[{name}]' (or 'normlab[trackers]' for all three)")
    return None
