"""Train planned runs in parallel worker processes: reuse finished ones, resume interrupted ones.

Up to `jobs` spawned worker processes (a clean torch with its own thread count) ask the parent for
tasks (one run, or a stacked group of runs), one at a time. A run that diverges or raises is recorded
and the sweep goes on.
Safety, as a user expects of a sweep:
- workers die with the parent (PR_SET_PDEATHSIG on Linux, a parent watch elsewhere), so a killed
  `normlab run` never leaves orphans training beside a re-run (each run directory is also locked);
- workers sit in their own process group: a terminal Ctrl-C reaches only the parent, which asks
  each worker once (SIGINT) to stop after its current step and checkpoint; a second Ctrl-C kills
  them and the parent exits at once;
- a run whose summary says `failed` is retried on the next run (unless skip_failed).
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import queue as queue_mod
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import ConfigError, RunConfig, from_dict
from ..rundir import RunLock, read_json, write_json
from ..rundir.lock import LockHeld
from ..workers import spawn_worker
from .spec import PlannedRun

FINISHED = ("complete", "diverged")


def run_state(run: PlannedRun, fingerprints: dict | None = None) -> str:
    """new | finished | failed | partial; refuses (ConfigError) a run directory trained with another config or
    on a `text:` file that has changed since. `fingerprints` caches the text's hash across one sweep's runs."""
    from ..training.setup import config_changes, saved_config

    folder = run.run_dir
    if not (folder / "config.yaml").exists():
        return "new"
    saved = saved_config(folder)
    wanted = dataclasses.replace(run.cfg, model=dataclasses.replace(run.cfg.model, vocab_size=saved.model.vocab_size))
    changed = config_changes(saved, wanted)
    if changed:
        raise ConfigError(f"{folder} was trained with another config ({'; '.join(changed[:6])}); this sweep would "
                          "extend or overwrite it. Give the sweep its own folder (--out DIR) or remove that one")
    _refuse_changed_text(run, {} if fingerprints is None else fingerprints)
    status = read_json(folder / "summary.json").get("status") if (folder / "summary.json").exists() else None
    if status in FINISHED:
        return "finished"
    return "failed" if status == "failed" else "partial"


def _refuse_changed_text(run: PlannedRun, fingerprints: dict) -> None:
    """A run trained on a `text:` file that has changed since is refused before anything trains: a finished one
    would be reused and reported beside runs on the new text, a partial one refused mid-sweep by its resume.
    (Hub data sets are versioned and cached, and opening one may need the network, so they are not re-hashed.)"""
    data = run.cfg.data
    meta = run.run_dir / "meta.json"
    if not any(s.startswith("text:") for s in (data.source, data.val_source or "")) or not meta.is_file():
        return
    trained_on = read_json(meta).get("data")
    key = repr(dataclasses.astuple(data))
    if key not in fingerprints:   # one hash of the text per sweep, not one per run
        from ..data.batching import data_fingerprint

        fingerprints[key] = data_fingerprint(data)
    if trained_on and trained_on != fingerprints[key]:
        raise ConfigError(f"{run.run_dir} was trained on other text: the file behind data.source={data.source} "
                          f"changed since (fingerprint {trained_on}, now {fingerprints[key]}), so this sweep "
                          "would mix runs on two texts. Give the sweep its own folder (--out DIR), remove that "
                          "one, or restore the file")


@dataclass
class Task:
    """Runs trained together in one process: one run, or a stack of same-shape runs."""
    runs: list[PlannedRun]
    threads: int = 1

    @property
    def name(self) -> str:
        return self.runs[0].cfg.name if len(self.runs) == 1 else f"{self.runs[0].variant} x{len(self.runs)}"

    def payload(self) -> list[tuple[dict, str]]:
        """What a worker process (or a Ray task) needs: plain data, no live objects."""
        return [(dataclasses.asdict(r.cfg), str(r.run_dir)) for r in self.runs]


def _die_with_parent(parent: int) -> None:
    """The worker ends when the sweep's parent process does (kill -9 of `normlab run` included)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def train_task(runs: list[tuple[dict, str]], threads: int, progress: Callable[[str, int, int], None] | None = None,
               on_done: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
    """Train one task's runs (config dict, run dir) in this process; {run name: summary}. The body of every
    launcher's worker (local processes, Ray tasks): a run that raises is recorded as failed, the rest go on."""
    import torch

    torch.set_num_threads(threads)
    from ..training import train

    if len(runs) > 1:
        return _train_stack(runs, progress, on_done)
    results = {}
    for cfg_dict, run_dir in runs:
        cfg = from_dict(RunConfig, cfg_dict)
        name = Path(run_dir).name

        def report(step, total, name=name):
            if progress is not None and (step % 25 == 0 or step == total):
                progress(name, step, total)
        try:
            summary = train(cfg, run_dir, resume=True, progress=report)
        except KeyboardInterrupt:
            summary = {"status": "interrupted"}
        except Exception as err:  # one broken run must not stop the sweep
            summary = {"name": name, "status": "failed", "error": f"{type(err).__name__}: {err}",
                       "traceback": traceback.format_exc()}
            if not isinstance(err, ConfigError) or (Path(run_dir) / "config.yaml").exists():
                record_failure(Path(run_dir), summary, err)
        results[name] = summary
        if on_done is not None:
            on_done(name, summary)
        if summary.get("status") == "interrupted":
            break
    return results


def _train_stack(runs: list[tuple[dict, str]], progress, on_done) -> dict[str, dict]:
    """Several same-shape runs as one stacked model (training/stacked_loop.py); on an error every member
    is recorded as failed (the next sweep retries them, or trains them alone with --no-stack)."""
    from ..training.stacked_loop import train_stacked

    cfgs = [from_dict(RunConfig, c) for c, _ in runs]
    dirs = [Path(d) for _, d in runs]
    try:
        results = train_stacked(cfgs, dirs, progress)
    except KeyboardInterrupt:
        results = {d.name: {"status": "interrupted"} for d in dirs}
    except Exception as err:  # noqa: BLE001  (recorded per member, the sweep goes on)
        results = {}
        for d in dirs:
            results[d.name] = {"name": d.name, "status": "failed", "error": f"{type(err).__name__}: {err}",
                               "traceback": traceback.format_exc(), "stacked": len(dirs)}
            if (d / "config.yaml").exists():
                record_failure(d, results[d.name], err)
    for name, summary in results.items():
        if on_done is not None:
            on_done(name, summary)
    return results


def record_failure(run_dir: Path, summary: dict, err: Exception) -> None:
    """summary.json of a failed run, written only under the run's lock. A run whose lock was refused is another
    process's (training it, or just done with it): nothing is written there, and neither into the other members
    of a refused stack, which take every lock before touching any run. A disk too full for even this leaves the
    summary out; the failure still reaches the parent, which prints its line."""
    if isinstance(err, LockHeld):
        return
    try:
        with RunLock(run_dir):
            write_json(run_dir / "summary.json", summary)
    except LockHeld:   # another process took the run after this one let it go
        summary["error"] += f" (summary.json not written: {run_dir} is another process's now)"
    except (ConfigError, OSError) as err:
        summary["error"] += f" (summary.json not written either: {err})"


PROGRESS_EVERY_S = 0.5   # a worker reports a run's step at most this often, and its last step (one message a step
                         # and member was ~5,000 messages a stack, for a display that redraws a few times a second)


class _Outbox:
    """A worker's messages to the parent, sent by a thread of its own over the worker's own pipe. The pipe is
    no one else's, so a worker killed mid-message harms no other (a shared multiprocessing.Queue's write lock
    would stay held by the dead worker and hang every other one), and a thread never takes Python's signal
    handlers, so a Ctrl-C cannot cut a message in half."""

    def __init__(self, conn):
        self.conn, self.pending = conn, queue_mod.SimpleQueue()
        self.last: dict[str, float] = {}
        self.thread = threading.Thread(target=self._send_all, name="normlab-outbox", daemon=True)
        self.thread.start()

    def _send_all(self) -> None:
        while (message := self.pending.get()) is not None:
            try:
                self.conn.send(message)
            except OSError:   # the parent is gone; this worker ends with it
                return

    def put(self, message) -> None:
        self.pending.put(message)

    def progress(self, name: str, step: int, total: int) -> None:
        now = time.monotonic()
        if step >= total or now - self.last.get(name, -PROGRESS_EVERY_S) >= PROGRESS_EVERY_S:
            self.last[name] = now
            self.put(("progress", name, step, total))

    def close(self, last_message) -> None:
        """Send `last_message` after everything before it, and wait until all of it is written."""
        self.put(last_message)
        self.put(None)
        while self.thread.is_alive():
            try:
                self.thread.join()
            except KeyboardInterrupt:   # a stop arriving now changes nothing: the messages still go out
                continue
        self.conn.close()


def _worker(index: int, inbox, outbox, parent: int, reuse: bool = True) -> None:
    """Ask the parent for a task, train it, ask again, until it answers None (no task left, or a stop): one
    process for many tasks, so torch and normlab are imported once per worker, not once per task (about 3 s a
    task here). `inbox` and `outbox` are this worker's own two pipes from and to the parent. A task comes with
    its thread count: a worker may start before the parent has planned the sweep (prestart)."""
    os.setpgrp()  # a terminal Ctrl-C goes to the parent alone, which forwards one SIGINT
    _die_with_parent(parent)
    out = _Outbox(outbox)
    try:
        import normlab.training  # noqa: F401  (torch and the engines, while the parent still plans)

        while True:
            out.put(("ready", index, None))
            item = inbox.recv()
            if item is None:
                break
            item, threads = item
            results = train_task(item, threads, progress=out.progress,
                                 on_done=lambda name, summary: out.put(("done", name, summary)))
            if not reuse or any(r.get("status") == "interrupted" for r in results.values()):
                break
    except (KeyboardInterrupt, EOFError):  # the stop came between two tasks; EOF: the parent is gone
        pass
    finally:
        out.close(("exit", index, None))


MAX_EARLY_KILLS = 3   # workers killed by a signal before their first task that a sweep replaces (Sweep._ended)


@dataclass
class _Worker:
    process: object
    tasks: object      # the parent's end of the pipe that hands this worker its tasks
    messages: object   # the parent's end of the pipe this worker's messages come through
    took: bool = False           # was handed a task (a death before that is a start-up failure: Sweep._ended)
    holding: int | None = None   # the task it trains


def _spawn_worker(ctx, index: int, reuse: bool) -> _Worker:
    return _Worker(*spawn_worker(ctx, _worker, index, reuse))


@dataclass
class Sweep:
    """The parent side: start up to `jobs` workers, hand each a task when it asks, collect their messages, handle
    Ctrl-C. A worker that dies without saying so (killed, out of memory) fails the task it held; a
    replacement takes the tasks no one started."""
    tasks: list[Task]
    jobs: int
    on_progress: Callable[[str, int, int], None] = lambda name, step, total: None
    on_done: Callable[[str, dict], None] = lambda name, summary: None
    results: dict = field(default_factory=dict)
    interrupted: bool = False
    reuse: bool = True   # False (--no-stack): one fresh process per task, as before stacking existed
    started: object = None   # normlab.prestart.Prestarted: workers started before the sweep was planned
    # called once, in this process, when no task is left to hand out and a core no worker trains on is free (the
    # sweep's tail): the CLI warms up its report's imports there instead of after the last run
    on_idle_core: Callable[[], None] | None = None

    def run(self) -> dict[str, dict]:
        # Each worker has two pipes of its own, no multiprocessing.Queue: a Queue's locks are shared by every
        # writer (a worker killed while holding one hangs the rest), and its feeder is a daemon thread that can
        # free its semaphores last, as the interpreter exits, between unlinking one and telling the resource
        # tracker (the "leaked semaphore" warning CI saw after a Ctrl-C'd sweep). The parent sends a task only to
        # a worker that asked for one, so it always knows who holds what.
        ctx = mp.get_context("spawn")
        self._lost = False
        self._broken: int | None = None   # the exit code of a worker that died before asking for a task
        self._killed_early = 0   # workers killed by a signal before their first task (each is replaced, a few times)
        self._pending = deque(range(len(self.tasks)))   # tasks no worker was handed yet, longest first
        self._workers: dict[int, _Worker] = {}
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)} \
            if threading.current_thread() is threading.main_thread() else {}
        n_workers = min(self.jobs, len(self.tasks))

        def spawn(index: int) -> None:
            self._workers[index] = _spawn_worker(ctx, index, self.reuse)
        try:
            adopted = self.started.take(n_workers) if self.started is not None else []
            for w, (proc, tasks_out, messages_in) in enumerate(adopted):
                self._workers[w] = _Worker(proc, tasks_out, messages_in)
            for w in range(len(adopted), n_workers):
                spawn(w)
            next_index = n_workers
            while self._workers:
                self._drain()
                if self.on_idle_core is not None and not self._pending and not self.interrupted and sum(
                        w.holding is not None for w in self._workers.values()) < cores():
                    idle, self.on_idle_core = self.on_idle_core, None
                    idle()
                if (self._lost or not self.reuse) and self._pending and not self.interrupted \
                        and self._broken is None and len(self._workers) < n_workers:
                    self._lost = False
                    spawn(next_index)
                    next_index += 1
            if self._broken is not None and not self.interrupted:
                reason = (f"no worker could start: each was killed (signal {-self._broken}) before taking a task; "
                          "out of memory? see `dmesg`, or use fewer --jobs" if self._broken < 0 else
                          f"no worker could start: each exited (code {self._broken}) before taking a task; a spawned "
                          "worker imports the script that started the sweep, so call it from a file (under `if "
                          "__name__ == '__main__':`), a notebook or the CLI")
                for i in self._pending:
                    for run in self.tasks[i].runs:
                        self._fail(run.cfg.name, reason)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            for w in list(self._workers.values()):
                w.tasks.close()
                w.messages.close()
        return self.results

    def _fail(self, name: str, error: str) -> None:
        if name not in self.results:
            self.results[name] = {"status": "failed", "error": error}
            self.on_done(name, self.results[name])

    def _drain(self) -> None:
        by_pipe = {w.messages: index for index, w in self._workers.items()}
        ready = mp_connection.wait(list(by_pipe), timeout=0.3)
        for pipe in ready:
            index = by_pipe[pipe]
            try:
                message = pipe.recv()
            except (EOFError, OSError):  # its end closed: the worker died (perhaps mid-message, a torn one)
                self._ended(index, said_so=False)
                continue
            self._handle(index, *message)
        if not ready:   # a dead worker's pipe stays open while a process it forked lives on: ask the process too
            for index, w in list(self._workers.items()):
                if not w.process.is_alive():   # all it wrote was read (a pipe with data would have been ready)
                    self._ended(index, said_so=False)

    def _handle(self, index: int, kind: str, key, *rest) -> None:
        if kind == "ready":   # it holds no task now (its last one, if any, is done)
            self._give(index)
        elif kind == "progress":
            self.on_progress(key, *rest)
        elif kind == "done":
            self.results[key] = rest[0]
            self.on_done(key, rest[0])
        elif kind == "exit":
            self._ended(index, said_so=True)

    def _give(self, index: int) -> None:
        """Answer a worker's ask: the next task, or None when none is left or the sweep stops."""
        worker = self._workers[index]
        worker.holding = None
        task = self._pending[0] if self._pending and not self.interrupted else None
        try:
            worker.tasks.send(None if task is None else (self.tasks[task].payload(), self.tasks[task].threads))
        except OSError:   # it died after asking: its pipe's end-of-file comes next
            return
        if task is not None:
            self._pending.popleft()
            worker.holding, worker.took = task, True

    def _ended(self, index: int, said_so: bool) -> None:
        """A worker is gone, after its exit message or without one (killed, out of memory). A run of the task it
        held that it never reported fails. One that exited before its first task is not replaced (a replacement
        would die the same way: a script that cannot be re-imported, a broken install); one killed by a signal
        before it (the OOM killer while torch loads) is, up to MAX_EARLY_KILLS times in a sweep."""
        worker = self._workers.pop(index)
        worker.tasks.close()
        worker.messages.close()
        worker.process.join(None if said_so else 30)
        code = worker.process.exitcode
        if not said_so and not worker.took:
            if code is not None and code < 0 and self._killed_early < MAX_EARLY_KILLS:
                self._killed_early += 1
                self._lost = True
            else:
                self._broken = code
            return
        self._lost = self._lost or not said_so
        error = (f"worker exited with code {code}" if not said_so else
                 f"its worker ended (code {code}) before reporting it")
        for run in self.tasks[worker.holding].runs if worker.holding is not None else []:
            self._fail(run.cfg.name, error)

    def _stop(self, signum, frame) -> None:
        if self.interrupted:  # second Ctrl-C: no more waiting
            for w in list(self._workers.values()):
                if w.process.is_alive():
                    os.kill(w.process.pid, signal.SIGKILL)
            raise KeyboardInterrupt
        self.interrupted = True
        for w in list(self._workers.values()):
            if w.process.is_alive():
                os.kill(w.process.pid, signal.SIGINT)


def cores() -> int:
    """CPU cores this process may use (the affinity mask: a container or taskset may allow fewer than cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def workers_and_threads(jobs: int, n_tasks: int) -> tuple[int, int]:
    """(worker processes, threads each) with workers x threads <= cores: never oversubscribed. Tiny models
    gain nothing from a second thread (benchmarks/stacked.py threads), so spare cores go to more workers first."""
    n = max(1, min(jobs, n_tasks or 1, cores()))
    return n, max(1, cores() // n)


MAX_STACK = 64  # members per stacked task (memory grows with E; beyond ~64 tiny members the gain flattens on a CPU)


def plan_tasks(runs: list[PlannedRun], skip_failed: bool = False, stack: bool = True,
               workers: int | None = None) -> tuple[list[Task], dict[str, str]]:
    """Tasks for the runs that still need training (same-shape runs stacked into one task unless stack is
    False), and the state of every run, longest first. With `workers` known (the local launcher), stacks are split
    where that ends the sweep sooner (`balance`); the Ray launcher splits them once it knows its cluster."""
    fingerprints: dict[str, str] = {}
    states = {r.cfg.name: run_state(r, fingerprints) for r in runs}  # raises before anything trains if one was changed
    todo = [r for r in runs if states[r.cfg.name] in ("new", "partial") or
            (states[r.cfg.name] == "failed" and not skip_failed)]
    if not stack:
        return [Task([r]) for r in todo], states
    from ..training.stacked_loop import stack_key

    groups: dict[str, list[PlannedRun]] = {}
    alone = []
    for r in todo:
        key = stack_key(r.cfg)
        (groups.setdefault(key, []) if key is not None else alone).append(r)
    tasks = [Task(g[i:i + MAX_STACK]) for g in groups.values() for i in range(0, len(g), MAX_STACK)]
    tasks += [Task([r]) for r in alone]
    return (balanced(tasks, workers) if workers else longest_first(tasks)), states


def longest_first(tasks: list[Task]) -> list[Task]:
    """The order tasks are handed out (local workers and Ray alike): longest first, so the last wave is the shortest."""
    return sorted(tasks, key=_cost, reverse=True)


def balanced(tasks: list[Task], workers: int) -> list[Task]:
    """`balance` for `workers` slots, longest first: what a launcher trains once it knows how many run at once."""
    return longest_first(balance(tasks, workers))


def balance(tasks: list[Task], workers: int) -> list[Task]:
    """Split stacks in two where that ends the sweep sooner: three 5-stacks of a wide model on two workers take two
    stack lengths with a core idle for one of them; a 5-stack split 3 + 2 fills it. Both halves stay stacks (a stack
    of 4 or more is split, never into a lone run, which would train on the plain path and round differently): a
    member computes the same bits in a stack of any size, so a split changes no result. The makespan is estimated
    by `_cost` and the workers' longest-first order (Sweep hands tasks out in that order). The longest splittable
    stack is split again and again, down to stacks of 2-3, and the plan kept is the first with the shortest
    makespan: a split that only helps after a second one (calibration's two 5-stacks on two workers) is found,
    and where splitting only moves work (a tie), the stacks stay whole."""
    costs = {id(t): _cost(t) for t in tasks}   # each task's estimate once: the search re-plans many times
    cost = lambda t: costs[id(t)]  # noqa: E731
    best, best_span = list(tasks), _makespan(tasks, workers, cost)
    trial = list(tasks)
    while workers > 1:
        big = max((t for t in trial if len(t.runs) >= 4), key=cost, default=None)
        if big is None:
            break
        half = (len(big.runs) + 1) // 2
        halves = [Task(big.runs[:half]), Task(big.runs[half:])]
        costs.update({id(t): _cost(t) for t in halves})
        trial = [t for t in trial if t is not big] + halves
        span = _makespan(trial, workers, cost)
        if span < best_span * (1 - 1e-9):
            best, best_span = list(trial), span
    return best


def _makespan(tasks: list[Task], workers: int, cost: Callable[[Task], float] | None = None) -> float:
    loads = [0.0] * max(1, workers)
    for c in sorted(map(cost or _cost, tasks), reverse=True):   # each free worker takes the longest task left
        loads[loads.index(min(loads))] += c
    return max(loads)


def _cost(task: Task) -> float:
    """A task's wall time in ms, roughly: its stack's base for as long as any member trains, plus each member's share
    for its own steps (a member that reaches its end leaves the stack)."""
    cfg = task.runs[0].cfg
    base, member = step_ms(cfg)
    return max(r.cfg.train.steps for r in task.runs) * base + sum(r.cfg.train.steps for r in task.runs) * member


# A stacked step on one CPU thread, ms, fitted to measured group times on 2-core CPUs (benchmarks/RESULTS.md,
# "Session 14"): a base per layer that grows with the norms a block runs (a tiny model's step is the dispatch of its
# ops, and a norm is several ops each way), plus a share per member that grows with its arithmetic, sublinearly
# because small matmuls run far below the CPU's peak (~20 GFLOP/s at the zoo's width, ~40 at nanoGPT's).
LAYER_MS, NORM_MS, MEMBER_LAYER_MS, MEMBER_GFLOP_MS, GFLOP_POWER = 0.48, 0.165, 0.05, 33.0, 0.79


def step_ms(cfg: RunConfig) -> tuple[float, float]:
    """(base, per member) of a stacked step: L (0.48 + 0.165 norms a block) and 0.05 L + 33 GFLOP^0.79 (GFLOP = 6 x
    the blocks' weights x tokens). Fitted to prepost (pre x2/x3/x5 7.8/8.4/9.8 s and none x5 7.2 s for 1,000
    steps), the zoo's width (9.6 ms a step alone, 39 x5) and nanoGPT's (a 5-stack 900 s for 2,000 steps). What it
    decides is where to split: a split pays a second base, most of a stack at prepost's size and next to nothing
    at nanoGPT's."""
    from ..model.placements import PLACEMENTS

    m = cfg.model
    placement = PLACEMENTS.get(m.norm.placement)
    norms = 2 * len(placement.slots) if placement is not None else 2
    layers = max(1, m.n_layer)
    gflop = 6 * layers * (4 + 2 * m.mlp_ratio) * m.d_model ** 2 * cfg.train.batch_size * m.block_size / 1e9
    return layers * (LAYER_MS + NORM_MS * norms), MEMBER_LAYER_MS * layers + MEMBER_GFLOP_MS * gflop ** GFLOP_POWER
