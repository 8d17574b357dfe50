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
from ..report import check_figure_set
from ..rundir import RunLock, write_json
from .progress import SweepProgress
from .runner import Sweep, cores, plan_tasks, workers_and_threads
from .spec import (expand, load_experiment, override_key, parse_seeds, replaced_variant_keys, seeds_label,
                   watching_only)


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
                   echo=_console, stack: bool = True, display: str = "none", started=None,
                   figures: str = "summary") -> ExperimentResult:
    """`display`: how the sweep shows its progress (progress.SweepProgress): "auto" (a live table on a terminal,
    periodic lines elsewhere; what the CLI passes), "bar", "lines" or "none". `started`: workers the CLI started
    before importing torch (normlab.prestart.Prestarted), adopted by a local sweep."""
    _check_launcher(launcher, address)
    check_figure_set(figures)
    spec = load_experiment(name)
    seed_list = parse_seeds(seeds, spec.seeds)
    planned = expand(spec, list(overrides), seed_list, out, preset)
    exp_dir = planned[0].run_dir.parent
    if replicate is not None:   # checked now, not after the sweep has trained
        from ..report.replication import read_original

        original = read_original(Path(replicate), seed_list)   # the file: parses, seeds and claims well-formed
        check_replicate(Path(replicate), original, spec.name, seed_list, exp_dir)
    workers = min(jobs or spec.jobs, cores()) if launcher == "local" else None   # Ray's cluster decides its own
    tasks, states = plan_tasks(planned, skip_failed, stack, workers)
    check_data([r for t in tasks for r in t.runs], spec, preset)   # before anything is written or trained
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {exp_dir}: {err.strerror or err} (--out must be a writable folder)") from None
    # One `normlab run` per experiment folder: a second one on the same --out would train nothing (each run is
    # locked) yet write experiment.json and a report built before the first one's runs finished, over its own.
    with RunLock(exp_dir):
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
        for o, setting in replaced_variant_keys(spec, overrides).items():
            setting = [v for v in setting if v in variants]
            unset = [v for v in variants if override_key(o) not in spec.variants[v]]   # the base's value
            if len(setting) == len(variants):
                echo(f"note: {o} replaces the value every variant sets itself: they no longer differ in it")
            elif setting:
                echo(f"note: {o} also replaces the value that variant(s) {', '.join(setting)} set themselves; for "
                     f"one variant only, write VARIANT:{o}" + (f" (e.g. {unset[0]}:{o})" if unset else ""))
        t0 = time.perf_counter()
        shown = SweepProgress(tasks, display if launcher == "local" else "none", write=echo)  # Ray prints its own
        sweep = _sweep(launcher, tasks, jobs or spec.jobs, jobs, address, echo, reuse=stack, shown=shown,
                       started=started)
        with shown:
            results = sweep.run()
        wall = time.perf_counter() - t0
        if sweep.interrupted:
            flags = [f"--seeds {seeds}" if seeds is not None else "", f"--preset {preset}" if preset else "",
                     f"--out {out}" if out else "", f"--launcher {launcher}" if launcher != "local" else "",
                     f"--address {address}" if address else ""]
            echo(f"interrupted: finished runs are kept and stopped runs saved a checkpoint; continue with: normlab run "
                 f"{name} {' '.join(overrides)} {' '.join(f for f in flags if f)}".replace("  ", " ").strip())
            return ExperimentResult(exp_dir, results, wall, interrupted=True)
        if results and all(s.get("status") == "failed" for s in results.values()) \
                and not any(state == "finished" for state in states.values()):
            return ExperimentResult(exp_dir, results, wall)   # nothing to report on: no report, the CLI says why
        from ..report import build_report  # here, not at the top: a sweep worker imports this package and never
        # reports (scipy.stats and matplotlib are ~1.7 s of every worker's start-up)

        if replicate is not None:
            from ..report.replication import write_replication

            build_report(exp_dir, spec, figures)  # results.json with this seed set's verdicts first
            rows = write_replication(Path(replicate), exp_dir)
            counts = {o: sum(r["outcome"] == o for r in rows) for o in ("replicated", "failed to replicate", "not decided")}
            echo(f"replication of {replicate}: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
                 + f" of {len(rows)} claims ({exp_dir / 'replication.md'})")
        paths = build_report(exp_dir, spec, figures)
        return ExperimentResult(exp_dir, results, wall, report=paths)


def check_replicate(original: Path, results: dict, experiment: str, seeds: list[int], exp_dir: Path) -> None:
    """--replicate DIR before anything trains, given its results.json as read_original checked it (the file parses,
    its seeds are integers disjoint from these, its claims well-formed): DIR holds the same experiment, is not the
    folder this run fills, and has verdicts to compare."""
    flag = f"--replicate {original}"
    if results.get("experiment") != experiment:
        raise ConfigError(f"{flag}: that folder holds experiment {results.get('experiment')!r}, not {experiment!r}; "
                          f"a replication compares the same experiment's claims (e.g. --replicate runs/{experiment})")
    if original.resolve() == exp_dir.resolve():
        raise ConfigError(f"{flag}: that is the folder this run fills; pass other seeds (e.g. --seeds "
                          f"{max(seeds) + 1}-{max(seeds) + len(seeds)})")
    if not any(c.get("verdict") for c in results.get("claims", [])):
        raise ConfigError(f"{flag}: its results.json has no claim verdicts to compare")


def check_data(runs: list, spec, preset: str | None) -> None:
    """Open every data source the runs about to train read, once each (not once a run, in every worker): an offline
    Hub source, a missing `text:` file or a missing extra stops the sweep here, in one line, before anything is
    written. The line names a preset of the experiment that reads an embedded or local corpus, when there is one."""
    from ..data.corpora import open_source
    from ..data.localtext import reading, text_files
    from ..data.synthetic import is_synthetic, parse as parse_synthetic

    seen = set()
    for run in runs:
        data = run.cfg.data
        for source in (data.source, data.val_source):
            if not source or (source, data.cache_dir) in seen:
                continue
            seen.add((source, data.cache_dir))
            try:
                if is_synthetic(source):   # generated in code (data/synthetic.py), nothing to open
                    parse_synthetic(source)
                elif source.startswith("text:"):   # the files exist and open; not hashed again (run_state did)
                    for f in text_files(source[len("text:"):]):
                        with reading(f), open(f, "rb") as fh:
                            fh.read(1)
                else:
                    open_source(source, data.cache_dir)
            except ConfigError as err:
                offline = [p for p, o in spec.presets.items() if p != preset and isinstance(o, dict)
                           and (str(o.get("data.source", "")) == "names" or str(o.get("data.source", "")).startswith(
                               "text:"))]
                hint = (f"; or --preset {offline[0]} (data.source={spec.presets[offline[0]]['data.source']}, "
                        "no download)") if offline else ""
                raise ConfigError(f"{err}{hint}; nothing was trained or written") from None


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
           reuse: bool = True, shown: SweepProgress | None = None, started=None):
    """Local: `jobs` processes, the machine's cores split among them, each taking task after task (reuse; with
    --no-stack one process per run, as before stacking). Ray: each task keeps its own threads
    (the cluster's nodes, not this machine, decide how many run), at most --jobs in flight when given."""
    said: dict[str, str] = {}   # error -> the first run that printed it: a shared cause is printed once

    def on_done(run: str, s: dict) -> None:
        error = str(s.get("error") or "")
        if s.get("status") == "failed" and error in said:
            echo(f"  {run}: failed (the same error as {said[error]})")
        else:
            said.setdefault(error, run)
            echo(_done_line(run, s))
        if shown is not None:
            shown.done(run, s)
            row = shown.row_of.get(run)
            stack = s.get("stacked") if isinstance(s.get("stacked"), dict) else {}
            if row is not None and len(row.runs) > 1 and len(row.ended) == len(row.runs) \
                    and stack.get("group_train_time_s") is not None:   # the stack's time once, not once a member
                echo(f"  {row.label}: {len(row.runs)} runs trained stacked in {stack['group_train_time_s']:.1f} s")
    if launcher == "ray":
        from .launchers.ray import RaySweep

        return RaySweep(tasks, address, jobs_asked, on_done=on_done, echo=echo)
    n_jobs, threads = workers_and_threads(jobs, len(tasks))
    for task in tasks:
        task.threads = threads
    return Sweep(tasks, n_jobs, on_done=on_done, reuse=reuse, started=started, on_idle_core=_warm_up_report,
                 **({"on_progress": shown.progress} if shown is not None else {}))


def _warm_up_report() -> None:
    """Import what the report needs (scipy.stats for the claims, matplotlib and the probe registry for the figures:
    ~2 s) on the core the sweep's tail leaves free, so the report after the last run starts drawing at once."""
    import importlib

    for module in ("scipy.stats", "normlab.report.build", "normlab.report.drawing",   # drawing -> plots: Agg before
                   "normlab.report.probe_data", "normlab.probes"):                     # pyplot, as the report does
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001  (a broken install must not stop the runs; the report says it, after them)
            return


def _done_line(run: str, s: dict) -> str:
    status = s.get("status")
    if status == "complete":
        took = "" if isinstance(s.get("stacked"), dict) else f" ({s.get('train_time_s', 0):.1f} s)"   # a stack's: once
        return f"  {run}: complete, val loss {s.get('val_loss', float('nan')):.4f}{took}"
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
