"""`normlab run X`: plan the runs, train what is missing, write experiment.json and the report.

The experiment folder is runs/<name> for the experiment as shipped; a preset, another seed set or
CLI overrides get their own folder (runs/<name>-smoke, runs/<name>-seeds5-9, runs/<name>-mod1a2b3c),
so a changed setup never extends or overwrites another's runs. `replicate` compares the verdicts
with an earlier run of the experiment on other seeds (report/replication.py). `launcher` picks where
the tasks train: local processes (runner.Sweep) or a Ray cluster (launchers/ray.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError
from ..rundir import RunLock, write_json
from .runner import Sweep, cores, plan_tasks, workers_and_threads
from .spec import expand, load_experiment, parse_seeds, seeds_label, watching_only


@dataclass
class ExperimentResult:
    exp_dir: Path
    results: dict[str, dict]
    wall_s: float
    interrupted: bool = False
    report: dict = field(default_factory=dict)


def _console(line: str) -> None:
    print(line, flush=True)


LAUNCHERS = ("local", "ray")


def run_experiment(name: str, overrides: list[str] = (), seeds: str | int | None = None, jobs: int | None = None,
                   out: str | None = None, preset: str | None = None, skip_failed: bool = False,
                   replicate: str | None = None, launcher: str = "local", address: str | None = None,
                   echo=_console, stack: bool = True) -> ExperimentResult:
    _check_launcher(launcher, address)
    spec = load_experiment(name)
    seed_list = parse_seeds(seeds, spec.seeds)
    if replicate is not None:   # checked now, not after the sweep has trained
        from ..report.replication import read_original

        read_original(Path(replicate), seed_list)
    planned = expand(spec, list(overrides), seed_list, out, preset)
    exp_dir = planned[0].run_dir.parent
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {exp_dir}: {err.strerror or err} (--out must be a writable folder)") from None
    # One `normlab run` per experiment folder: a second one on the same --out would train nothing (each run is
    # locked) yet write experiment.json and a report built before the first one's runs finished, over its own.
    with RunLock(exp_dir):
        workers = min(jobs or spec.jobs, cores()) if launcher == "local" else None   # Ray's cluster decides its own
        tasks, states = plan_tasks(planned, skip_failed, stack, workers)
        variants = list(dict.fromkeys(p.variant for p in planned))  # a preset may run a subset
        info = {"name": spec.name, "title": spec.title, "description": spec.description, "seed_ref": spec.seed_ref,
                "source": spec.source, "variants": variants, "seeds": seed_list,
                "seeds_default": spec.seeds, "overrides": [o for o in overrides if not watching_only(o)],
                "watch_overrides": [o for o in overrides if watching_only(o)], "preset": preset,
                "claims": spec.claims, "runs": [{"variant": p.variant, "seed": p.seed, "dir": p.run_dir.name}
                                                for p in planned]}
        write_json(exp_dir / "experiment.json", info)
        reused = sum(s == "finished" for s in states.values())
        stacked = sum(len(t.runs) for t in tasks if len(t.runs) > 1)
        echo(f"{spec.name}: {len(variants)} variants x seeds {seeds_label(seed_list)} -> {exp_dir} "
             f"({sum(len(t.runs) for t in tasks)} to train, {reused} finished already; {len(tasks)} task(s)"
             + (f", {stacked} runs stacked" if stacked else "")
             + (f", {len(planned) - reused - sum(len(t.runs) for t in tasks)} failed kept (--skip-failed))"
                if skip_failed and any(s == "failed" for s in states.values()) else ")"))
        t0 = time.perf_counter()
        sweep = _sweep(launcher, tasks, jobs or spec.jobs, jobs, address, echo, reuse=stack)
        results = sweep.run()
        wall = time.perf_counter() - t0
        if sweep.interrupted:
            flags = [f"--seeds {seeds}" if seeds is not None else "", f"--preset {preset}" if preset else "",
                     f"--out {out}" if out else "", f"--launcher {launcher}" if launcher != "local" else "",
                     f"--address {address}" if address else ""]
            echo(f"interrupted: finished runs are kept and stopped runs saved a checkpoint; continue with: normlab run "
                 f"{name} {' '.join(overrides)} {' '.join(f for f in flags if f)}".replace("  ", " ").strip())
            return ExperimentResult(exp_dir, results, wall, interrupted=True)
        from ..report import build_report  # here, not at the top: a sweep worker imports this package and never
        # reports (scipy.stats and matplotlib are ~1.7 s of every worker's start-up)

        if replicate is not None:
            from ..report.replication import write_replication

            build_report(exp_dir, spec)  # results.json with this seed set's verdicts first
            write_replication(Path(replicate), exp_dir)
        paths = build_report(exp_dir, spec)
        return ExperimentResult(exp_dir, results, wall, report=paths)


def _check_launcher(launcher: str, address: str | None) -> None:
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    if address is not None and launcher != "ray":
        raise ConfigError(f"--address {address} is the Ray cluster to submit to; it needs --launcher ray")
    if launcher == "ray":
        from .launchers.ray import check_address, import_ray

        import_ray()  # refuse at once, before anything is planned or written
        check_address(address)


def _sweep(launcher: str, tasks: list, jobs: int, jobs_asked: int | None, address: str | None, echo,
           reuse: bool = True):
    """Local: `jobs` processes, the machine's cores split among them, each taking task after task (reuse; with
    --no-stack one process per run, as before stacking). Ray: each task keeps its own threads
    (the cluster's nodes, not this machine, decide how many run), at most --jobs in flight when given."""
    on_done = lambda run, s: echo(_done_line(run, s))  # noqa: E731
    if launcher == "ray":
        from .launchers.ray import RaySweep

        return RaySweep(tasks, address, jobs_asked, on_done=on_done, echo=echo)
    n_jobs, threads = workers_and_threads(jobs, len(tasks))
    for task in tasks:
        task.threads = threads
    return Sweep(tasks, n_jobs, on_done=on_done, reuse=reuse)


def _done_line(run: str, s: dict) -> str:
    status = s.get("status")
    if status == "complete":
        return f"  {run}: complete, val loss {s.get('val_loss', float('nan')):.4f} ({s.get('train_time_s', 0):.1f} s)"
    if status == "diverged":
        return f"  {run}: diverged at step {s.get('diverged_step')} ({s.get('diverged_reason')})"
    return f"  {run}: {status} {s.get('error') or ''}".rstrip()


def failed_runs(result: ExperimentResult) -> dict[str, str]:
    """{run: first line of its error} for the runs of this call that failed (their summary says why)."""
    return {name: (str(s.get("error") or "no error recorded").strip().splitlines() or [""])[0][:300]
            for name, s in result.results.items() if s.get("status") == "failed"}


def exit_code(result: ExperimentResult) -> int:
    """130 when interrupted, 1 when a run failed (the report is written all the same), else 0."""
    from ..training.signals import EXIT_INTERRUPTED

    return EXIT_INTERRUPTED if result.interrupted else (1 if failed_runs(result) else 0)


__all__ = ["ExperimentResult", "exit_code", "failed_runs", "run_experiment"]
