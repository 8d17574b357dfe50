"""Sweeps on a Ray cluster: `normlab run X --launcher ray [--address auto|host:port]`.

Each runner.Task becomes one Ray task (num_cpus = task.threads; one GPU when its runs train on CUDA)
whose body is runner.train_task, as in a local worker process, so both launchers train a run the same
way, byte for byte. Stacks are split to fill the tasks the cluster runs at once (`slots`), as the local
launcher fills its workers. Run directories live on the shared --out. A lost node: Ray retries the task
(MAX_RETRIES) elsewhere; the retry skips the task's runs that already finished and resumes the rest
from their last checkpoint. Ctrl-C cancels the tasks: queued ones never start, running ones get a
KeyboardInterrupt, which train() turns into a checkpointed stop (a stop flag read by each task covers a cancel
Ray loses); a second Ctrl-C kills them.
Ray docs: https://docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...config import ConfigError
from ...rundir import RunLock, read_json
from .. import runner
from ..runner import Task

MAX_RETRIES = 3  # a task survives this many lost nodes or crashed workers
# Node and worker deaths are system failures, retried under max_retries. Of the exceptions that escape
# train_task (it records a run's own errors as failed), only a filesystem error is worth a retry.
RETRY_EXCEPTIONS = [OSError]
LOCK_WAIT_S = 120.0  # a retry waits this long for the lost attempt's run lock (NFS frees it after its lease)
PROGRESS_EVERY_S = 15.0
INSTALL_HINT = "pip install 'normlab[ray]'"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--launcher ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


def finished_summary(run_dir: Path) -> dict | None:
    """The summary of a run that already finished (complete or diverged), else None."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    summary = read_json(path)
    return summary if summary.get("status") in runner.FINISHED else None


def wait_for_lock(run_dir: Path, timeout_s: float = LOCK_WAIT_S) -> None:
    """Wait until no process holds the run's lock (a lost attempt may still be dying); train() refuses the
    run, naming the holder, if it is still held after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with RunLock(Path(run_dir)):
                return
        except ConfigError:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(1.0, left))


def run_task(payload: list[tuple[dict, str]], threads: int, send: Callable[[tuple], None], where: str = "",
             lock_wait_s: float = LOCK_WAIT_S) -> dict[str, dict]:
    """The body of one Ray task: skip runs a lost attempt already finished, then runner.train_task the rest.
    `send` gets ("start", names, where), ("progress", name, step, total) and ("done", name, summary)."""
    todo, results = [], {}
    for cfg, run_dir in payload:
        folder = Path(run_dir)
        if not folder.parent.is_dir():  # the driver made it before submitting: --out is not shared
            results[folder.name] = {"name": folder.name, "status": "failed",
                                    "error": f"{folder.parent} does not exist on node {where or '?'}: --out must "
                                             "be a filesystem that every node of the Ray cluster mounts"}
            send(("done", folder.name, results[folder.name]))
            continue
        wait_for_lock(folder, lock_wait_s)  # first: a lost attempt that is still dying may yet finish the run
        done = finished_summary(folder)
        if done is not None:  # finished by an earlier attempt of this task: never trained twice
            results[folder.name] = done
            continue
        todo.append((cfg, run_dir))
    if todo:
        send(("start", [Path(d).name for _, d in todo], where))
        results.update(runner.train_task(todo, threads,
                                         progress=lambda name, step, total: send(("progress", name, step, total)),
                                         on_done=lambda name, summary: send(("done", name, summary))))
    return results


class _StopFlag:
    """Set by the driver on Ctrl-C before it cancels the tasks. Ray's cancel can miss a task: one whose dispatch
    races it, or one whose worker is still starting (seen in CI: a stack began a second after the stop and trained
    to its end). A task reads the flag before it trains, and a watcher thread (`_watch_stop`) reads it while the
    task runs, asking the loop for the same checkpointed stop a cancel would."""

    def __init__(self):
        self.stopped = False

    def set(self) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped


STOP_POLL_S = 0.5   # how often a running task reads the driver's stop flag


@contextlib.contextmanager
def _watch_stop(is_set: Callable[[], bool], every_s: float = STOP_POLL_S):
    """While the body runs, poll `is_set` on a thread; once it is true, ask the training loop to stop after its
    step (signals.request_stop: not a second interrupt, so Ray's own cancel, if it also lands, is still the
    first and the run saves its checkpoint). The request is cleared on the way out: Ray reuses the process."""
    from ...training import signals

    done = threading.Event()

    def watch() -> None:
        while not done.wait(every_s):
            try:
                if is_set():
                    signals.request_stop()
                    return
            except Exception:  # noqa: BLE001  (the flag's actor is gone with the driver: Ray ends the task itself)
                return

    signals.clear_stop_request()
    watcher = threading.Thread(target=watch, name="normlab-stop-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signals.clear_stop_request()


def _ray_body(payload: list[tuple[dict, str]], threads: int, cwd: str, inbox, stop) -> dict[str, dict]:
    import ray

    if ray.get(stop.is_set.remote()):
        return {}
    if os.path.isdir(cwd):  # relative paths in a config (data.source=text:...) mean what they meant to the driver
        os.chdir(cwd)
    where = f"{ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]})"

    def send(message) -> None:
        """Progress and end lines are best effort: once Ray cancels the task, the queue actor's put raises
        TaskCancelledError, which must not turn a checkpointed stop into a failed run."""
        try:
            inbox.put_nowait(message)
        except Exception:  # noqa: BLE001  (ray.exceptions.*, queue.Full: the task's return value carries the results)
            pass
    with _watch_stop(lambda: ray.get(stop.is_set.remote())):
        return run_task(payload, threads, send, where)


def needs_gpu(payload: list[tuple[dict, str]], cluster_gpus: float) -> bool:
    devices = {cfg["train"]["device"] for cfg, _ in payload}
    return "cuda" in devices or ("auto" in devices and cluster_gpus > 0)


def slots(resources: dict, tasks: list[Task], jobs: int | None) -> int:
    """How many of `tasks` the cluster trains at once: its CPUs over a task's threads, its GPUs where the tasks
    train on CUDA (one each), at most --jobs. Stacks are split to fill them (runner.balance), as the local launcher
    splits them to fill its workers: a member computes the same bits in a stack of any size."""
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    n = int(cpus // max(1, max((t.threads for t in tasks), default=1)))
    if gpus and any(needs_gpu(t.payload(), gpus) for t in tasks):
        n = min(n, int(gpus))
    return max(1, min(n, jobs or n))


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r}: expected auto or host:port (the head's GCS port, 6379 by default)")
    return host.strip("[]"), int(port)


def check_address(address: str | None) -> None:
    """Refuse a Ray address that cannot work, in seconds (ray.init retries a silent one for minutes)."""
    if address is None:
        return
    if address.startswith("ray://"):
        raise ConfigError(f"--address {address}: Ray Client is not supported; run normlab on a node of the cluster "
                          "(e.g. the head) with --address auto")
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # a Ray without this helper: let ray.init resolve the address
        resolved = address if address != "auto" else None
    else:
        if address != "auto":
            _split_address(address)
        try:
            resolved = canonicalize_bootstrap_address_or_die(address)
        except ConnectionError:
            raise ConfigError("--address auto: no Ray cluster was started on this machine (`ray start --head`, "
                              "or give --address host:port; without --address a local Ray is started)") from None
        except ValueError as err:
            raise ConfigError(f"--address {address}: {err}") from None
    if resolved is None:
        return
    host, port = _split_address(resolved)
    try:
        socket.create_connection((host, port), timeout=5.0).close()
    except OSError as err:
        seen = f" (Ray's reading of {address})" if resolved != address else ""
        raise ConfigError(f"--address {address}: no Ray cluster answers at {host}:{port}{seen}: "
                          f"{err.strerror or err}; is `ray start --head` running there?") from None


def connect(ray, address: str | None) -> bool:
    """ray.init for `address` (None: start a local Ray); True when this call connected (so disconnects)."""
    if ray.is_initialized():
        return False
    check_address(address)
    # "local", not None: ray.init() would join whatever cluster /tmp/ray last recorded, even a dead one
    kwargs = {"address": "local", "logging_level": logging.WARNING, "include_dashboard": False} \
        if address is None else {"address": address, "logging_level": logging.WARNING}
    try:
        ray.init(**kwargs)
    except ConnectionError as err:
        raise ConfigError(f"--address {address}: {str(err).strip().splitlines()[0]}") from None
    return True


class _Interrupts:
    """Counts SIGINT/SIGTERM while the sweep runs; the loop acts on the count (never inside a Ray call)."""

    def __init__(self):
        self.count = 0
        self._previous = {}

    def __enter__(self) -> "_Interrupts":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.count += 1

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


@dataclass
class RaySweep:
    """The driver side: submit each Task as a Ray task, print progress and end lines, handle Ctrl-C."""
    tasks: list[Task]
    address: str | None = None  # None: start a local Ray for this sweep
    jobs: int | None = None  # at most this many tasks in flight; None: as many as the cluster runs
    on_done: Callable[[str, dict], None] = lambda name, summary: None
    echo: Callable[[str], None] = print
    progress_every_s: float = PROGRESS_EVERY_S
    results: dict = field(default_factory=dict)
    interrupted: bool = False

    def run(self) -> dict[str, dict]:
        ray = import_ray()
        if not self.tasks:
            return self.results
        owned = connect(ray, self.address)
        try:
            with _Interrupts() as stops:
                self._loop(ray, stops)
        finally:
            if owned:
                ray.shutdown()
        return self.results

    def _loop(self, ray, stops: _Interrupts) -> None:
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()  # the inbox lives with the driver, not on a node we may lose
        inbox = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(here, False)})
        self._stop = ray.remote(_StopFlag).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, False)).remote()
        planned, at_once = len(self.tasks), slots(ray.cluster_resources(), self.tasks, self.jobs)
        self.tasks = runner.balanced(self.tasks, at_once)
        gpus = self._describe(ray)
        if len(self.tasks) != planned:
            self.echo(f"ray: stacks split into {len(self.tasks)} tasks to fill the {at_once} the cluster runs at once")
        remote, cwd = ray.remote(_ray_body), os.getcwd()
        self._announced, self._attempts, self._progress, self._last_progress = {}, {}, {}, time.monotonic()
        queue, refs = list(range(len(self.tasks))), {}
        while queue or refs:
            if stops.count and not self.interrupted:
                self._cancel(ray, refs, queue)
            if stops.count > 1:
                for ref in refs:
                    ray.cancel(ref, force=True)
                raise KeyboardInterrupt
            while queue and not self.interrupted and len(refs) < (self.jobs or math.inf):
                i = queue.pop(0)
                refs[self._submit(ray, remote, self.tasks[i], gpus, cwd, inbox)] = i
            if not refs:
                break
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            self._drain(inbox)
            for ref in ready:
                self._collect(ray, ref, self.tasks[refs.pop(ref)])
            self._print_progress()
        self._drain(inbox)

    def _submit(self, ray, remote, task: Task, gpus: float, cwd: str, inbox):
        payload = [(cfg, str(Path(run_dir).absolute())) for cfg, run_dir in task.payload()]
        options = {"num_cpus": task.threads, "num_gpus": 1 if needs_gpu(payload, gpus) else 0,
                   "max_retries": MAX_RETRIES, "retry_exceptions": RETRY_EXCEPTIONS, "name": f"normlab:{task.name}"}
        return remote.options(**options).remote(payload, task.threads, cwd, inbox, self._stop)

    def _describe(self, ray) -> float:
        """Say what the sweep runs on; refuse CUDA runs on a cluster without a GPU before any task starts."""
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        res = ray.cluster_resources()
        gpus = res.get("GPU", 0)
        for task in self.tasks:
            if gpus == 0 and needs_gpu(task.payload(), gpus):
                raise ConfigError(f"{task.name} trains on CUDA (train.device=cuda) but the Ray cluster has no GPU; "
                                  "add a GPU node or use train.device=cpu")
        where = f"cluster at {self.address}" if self.address else "a local Ray started for this sweep"
        self.echo(f"ray: {len(self.tasks)} tasks on {where}: {len(nodes)} node(s), {res.get('CPU', 0):g} CPUs, "
                  f"{gpus:g} GPUs")
        return gpus

    def _drain(self, inbox) -> None:
        n = inbox.qsize()
        for message in inbox.get_nowait_batch(n) if n else []:
            kind, key, *rest = message
            if kind == "progress":
                self._progress[key] = tuple(rest)
            elif kind == "done":
                self._record(key, rest[0])
            elif kind == "start":
                self._started(key, rest[0])

    def _started(self, names: list[str], where: str) -> None:
        for name in names:
            self._attempts[name] = self._attempts.get(name, 0) + 1
            if self._attempts[name] > 1:
                self.echo(f"  {name}: restarted on {where} (attempt {self._attempts[name]}, its node or worker was "
                          "lost); it resumes from its last checkpoint")

    def _record(self, name: str, summary: dict) -> None:
        self.results[name] = summary
        self._progress.pop(name, None)
        key = json.dumps(summary, sort_keys=True, default=str)
        if self._announced.get(name) != key:  # a task's return repeats what its messages said
            self._announced[name] = key
            self.on_done(name, summary)

    def _collect(self, ray, ref, task: Task) -> None:
        from ray.exceptions import RayError, TaskCancelledError

        try:
            out = ray.get(ref)
        except TaskCancelledError:  # cancelled before it started: nothing trained, nothing to report
            return
        except RayError as err:
            line = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            out = {r.cfg.name: {"name": r.cfg.name, "status": "failed",
                                "error": f"Ray task lost after {MAX_RETRIES} retries: {line}"}
                   for r in task.runs if r.cfg.name not in self.results}
        for name, summary in out.items():
            self._record(name, summary)

    def _cancel(self, ray, refs: dict, queue: list) -> None:
        self.interrupted = True
        queue.clear()
        ray.get(self._stop.set.remote())   # before the cancels: a task Ray starts anyway sees it (_StopFlag)
        self.echo(f"stopping: {len(refs)} Ray task(s) cancelled; running runs save a checkpoint first "
                  "(Ctrl-C again to kill them)")
        # the last submitted first: the queued tasks are cancelled before a running one stops and frees the slot
        # Ray would hand them (a cancel that reaches a task as it is dispatched can be lost)
        for ref in reversed(list(refs)):
            ray.cancel(ref, force=False)

    def _print_progress(self) -> None:
        if time.monotonic() - self._last_progress < self.progress_every_s or not self._progress:
            return
        self._last_progress = time.monotonic()
        running = sorted(self._progress.items())
        shown = ", ".join(f"{name} {step}/{total}" for name, (step, total) in running[:6])
        more = f" and {len(running) - 6} more" if len(running) > 6 else ""
        waiting = sum(len(t.runs) for t in self.tasks) - len(self.results) - len(running)
        self.echo(f"  progress: {shown}{more}; {len(self.results)} ended, {max(0, waiting)} waiting")
