"""Sweep workers started before the parent imports torch (`normlab run`, local launcher).

A worker is a fresh spawned interpreter that imports torch and normlab.training before its first task
(seconds); the parent imports torch too, to plan the sweep (normlab.rundir, the engines' stack keys). Started
first, the workers' start-up runs beside the parent's instead of after it (benchmarks/RESULTS.md, "Worker
start-up"). This module imports neither torch nor the experiments package (whose import pulls torch in): the
process target is a shim that imports the real worker (experiments/runner._worker) in the child. The Sweep
adopts as many workers as it needs (`take`); the rest are ended: their task pipe closes, and a worker that
reads end-of-file exits.
"""
from __future__ import annotations

import multiprocessing as mp

from .workers import spawn_worker


def _start(index: int, inbox, outbox, parent: int, reuse: bool) -> None:
    from normlab.experiments.runner import _worker

    _worker(index, inbox, outbox, parent, reuse)


class Prestarted:
    def __init__(self, n: int, reuse: bool = True):
        ctx = mp.get_context("spawn")
        self.workers = [spawn_worker(ctx, _start, index, reuse) for index in range(n)]

    def take(self, n: int) -> list[tuple]:
        """(process, task pipe, message pipe) of up to n workers, for the Sweep; the others are ended."""
        taken, self.workers = self.workers[:n], self.workers[n:]
        self.close()
        return taken

    def close(self) -> None:
        """End the workers no Sweep took (a sweep with fewer tasks, or one refused while planning): none holds a
        task, so each is stopped at once rather than waited for through its torch import."""
        for proc, tasks, messages in self.workers:
            tasks.close()
            messages.close()
            proc.kill()
        for proc, _, _ in self.workers:
            proc.join(10)
        self.workers = []

    def __enter__(self) -> "Prestarted":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
