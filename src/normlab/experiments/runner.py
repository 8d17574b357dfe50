"""Run planned runs in parallel processes, skipping finished ones and resuming interrupted ones.

Each run is independent: a run that diverges or raises is recorded and the sweep goes on.
Workers are spawned (not forked) so each gets a clean torch with its own thread count.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing as mp
import os
import traceback
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import dump_yaml, from_dict, RunConfig, read_yaml
from ..train import train
from ..train.rundir import read_json, write_json
from .spec import PlannedRun


def is_finished(run: PlannedRun) -> bool:
    """A run is reused only if it completed (or diverged) under exactly the same config."""
    summary, config = run.run_dir / "summary.json", run.run_dir / "config.yaml"
    if not (summary.exists() and config.exists()):
        return False
    saved = from_dict(RunConfig, read_yaml(config))
    wanted = dataclasses.replace(run.cfg, model=dataclasses.replace(run.cfg.model, vocab_size=saved.model.vocab_size))
    return dump_yaml(saved) == dump_yaml(wanted)


def _worker(cfg_dict: dict, run_dir: str, threads: int, queue) -> dict:
    import torch

    torch.set_num_threads(threads)
    cfg = from_dict(RunConfig, cfg_dict)
    name = Path(run_dir).name

    def report(step, total):
        if queue is not None and (step % 25 == 0 or step == total):
            queue.put((name, step, total))
    try:
        return train(cfg, run_dir, resume=True, progress=report)
    except Exception as err:  # one broken run must not stop the sweep
        summary = {"name": name, "status": "failed", "error": f"{type(err).__name__}: {err}",
                   "traceback": traceback.format_exc()}
        write_json(Path(run_dir) / "summary.json", summary)
        return summary


def run_all(runs: list[PlannedRun], jobs: int = 1, show_progress: bool = True) -> dict[str, dict]:
    """Train every run not already finished; return {run name: summary}."""
    results = {r.cfg.name: read_json(r.run_dir / "summary.json") for r in runs if is_finished(r)}
    todo = [r for r in runs if r.cfg.name not in results]
    if not todo:
        return results
    jobs = max(1, min(jobs, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, Progress(
            TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            disable=not show_progress, transient=False) as bar:
        queue = manager.Queue()
        tasks = {r.cfg.name: bar.add_task(r.cfg.name, total=r.cfg.train.steps) for r in todo}
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_worker, dataclasses.asdict(r.cfg), str(r.run_dir), threads, queue): r
                       for r in todo}
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=0.3)
                _drain(queue, bar, tasks)
                for fut in done:
                    run = futures[fut]
                    results[run.cfg.name] = fut.result()
                    bar.update(tasks[run.cfg.name], completed=run.cfg.train.steps)
            _drain(queue, bar, tasks)
    return results


def _drain(queue, bar, tasks) -> None:
    while not queue.empty():
        name, step, total = queue.get_nowait()
        bar.update(tasks[name], completed=step)
