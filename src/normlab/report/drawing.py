"""Draw and encode a report's figures on every core: matplotlib's drawing is pure Python (one core),
and a report of 20-70 figures spent ~95 % of its time there (prepost: 14 s of a 45 s `normlab run`).

A job is a function of no arguments returning {file: (figure or sentence, caption)}. The jobs run in
forked children (Linux: they inherit the loaded run data, nothing is pickled on the way in); each
child draws its jobs' figures, encodes them as PNG and sends back {file: (png bytes or sentence,
caption)}. Elsewhere, with one core, with few figures, or where forking is not safe (`fork_is_safe`), the
jobs run here one after another; the output is the same bytes either way (the figures do not depend on the
process that draws them).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
from typing import Callable

from . import plots

Job = Callable[[], dict]
_JOBS: list[Job] = []   # the forked children read the jobs from here (inherited, not pickled)
MIN_JOBS = 4            # below it a fork costs more than it saves


def _encoded(job: Job) -> dict:
    with plots.closing_new_figures():
        return {file: (fig if isinstance(fig, str) else plots.png(fig), caption)
                for file, (fig, caption) in job().items()}


def _run(index: int) -> dict:
    return _encoded(_JOBS[index])


def fork_is_safe() -> bool:
    """fork() copies only the calling thread, so a lock another thread holds stays locked in the child for good
    (a forked child hung in a futex beside the Ray test's cluster client). Children are forked only from a
    process with no other Python thread and without gRPC (Ray's driver and clients run their threads in C): a
    `--launcher ray` sweep or a notebook kernel draws its report in this process."""
    return threading.active_count() == 1 and "grpc" not in sys.modules


def _child() -> None:
    """SIGTERM (Pool.terminate) ends a child at once, whatever handler the parent had installed."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _processes(n_jobs: int) -> int:
    """NORMLAB_REPORT_PROCESSES, else the cores this process may use (its affinity mask)."""
    wanted = os.environ.get("NORMLAB_REPORT_PROCESSES", "").strip()
    if wanted and not (wanted.isdigit() and int(wanted) >= 1):
        from ..config import ConfigError

        raise ConfigError(f"NORMLAB_REPORT_PROCESSES={wanted!r}: give a whole number of processes, at least 1 "
                          "(1 draws the figures in this process)")
    n = int(wanted) if wanted else len(os.sched_getaffinity(0))
    return max(1, min(n, n_jobs))


def draw(jobs: list[Job], meanwhile: Job | None = None) -> tuple[list[dict], dict]:
    """(each job's encoded figures, in order; `meanwhile`'s, drawn here while the children work)."""
    n = _processes(len(jobs)) if sys.platform.startswith("linux") and len(jobs) >= MIN_JOBS else 1
    if n < 2 or not fork_is_safe():
        return [_encoded(j) for j in jobs], (_encoded(meanwhile) if meanwhile else {})
    global _JOBS
    _JOBS = jobs
    try:
        with mp.get_context("fork").Pool(n, initializer=_child) as pool:
            pending = pool.map_async(_run, range(len(jobs)), chunksize=1)
            mine = _encoded(meanwhile) if meanwhile else {}
            return pending.get(), mine
    finally:
        _JOBS = []
