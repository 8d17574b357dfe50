"""Run directories -> report.md, report.html, results.json and figures.

build_report(exp_dir, spec) reads only run-directory files. `spec` is the experiment (its claims,
its source's setup and its folder's optional figures.py with `rows`, `sections`, `figures` and
`notes` hooks, and `LEAD_FIGURE`, the file of the figure the report shows right after the claims);
without one (an unknown or pulled experiment) the report is the generic one. It
works on any partial sweep: unfinished runs are listed as missing, and claims say which seeds
they lack.
"""
from __future__ import annotations

from pathlib import Path

from ..rundir import atomic_write_bytes, atomic_write_text, now, write_json
from . import check_figure_set, evidence, figcache, render, setup_table, terminal
from .claims import Trained, evaluate_claims
from .runs import RunData, by_variant, load_experiment_runs, stack_losses
from .tables import Row, common_rows, metric_row


def _task(runs: list[RunData]) -> str:
    """data.task of a variant's runs (lm, reverse, sort): losses of different tasks share no axis."""
    return next(((r.config.get("data") or {}).get("task", "lm") for r in runs if r.config), "lm")


def loss_figures(groups: dict[str, list[RunData]]) -> dict[str, tuple[object, str]]:
    """Training curves of every experiment: loss panels, cumulative average, validation loss (small
    multiples or a ranking for many variants, with the caption that says so)."""
    from . import plots

    by_task: dict[str, dict[str, list[RunData]]] = {}
    for v, rs in groups.items():
        by_task.setdefault(_task(rs), {})[v] = rs
    figs = {}
    for i, (task, task_groups) in enumerate(by_task.items()):
        suffix = "" if i == 0 else f"_{task}"  # the first task (the LM, as variants are listed) keeps the plain names
        curves = {v: stack_losses(rs) for v, rs in task_groups.items() if any(len(r.loss) for r in rs)}
        if not curves:
            continue
        many = plots.many(curves)
        figs[f"loss_curves{suffix}.png"] = (plots.loss_panels(curves),
                                            plots.LOSS_CAPTION_MANY if many else plots.LOSS_CAPTION)
        figs[f"avg_loss{suffix}.png"] = (plots.cumulative_average(curves),
                                         plots.CUMULATIVE_CAPTION_MANY if many else plots.CUMULATIVE_CAPTION)
        if any(r.val for rs in task_groups.values() for r in rs):
            val = {v: [r.val for r in rs] for v, rs in task_groups.items()}
            figs[f"val_loss{suffix}.png"] = (plots.val_curves(val),
                                             plots.VAL_CAPTION_MANY if plots.many(val) else plots.VAL_CAPTION)
    return figs


def _hook(spec, name: str):
    module = spec.module("figures") if spec is not None and hasattr(spec, "module") else None
    return getattr(module, name, None) if module is not None else None


NOT_SCALE = ("train.device", "train.threads", "train.eval_every", "train.eval_batches", "train.print_every",
             "train.log_every", "train.checkpoint", "train.trackers", "probes.", "sample.", "out_dir", "name")
# settings that change how a run is watched or where it runs, not the setup a source's number belongs to


def trained_here(info: dict, spec) -> Trained:
    """How this folder's runs differ from the experiment as shipped (experiment.json's preset and overrides)."""
    preset, overrides = info.get("preset"), list(info.get("overrides") or [])
    settings = {}
    if preset and spec is not None and isinstance(getattr(spec, "presets", None), dict):
        chosen = spec.presets.get(preset) or {}
        settings.update({k: v for k, v in chosen.items() if k not in ("variants", "axes")})
        for axis in (chosen.get("axes") or {}).values():
            settings.update({k: "per variant" for k in axis})
    for o in overrides:
        key, _, value = str(o).partition("=")
        settings[key.strip()] = value.strip()
    changed = [f"{k}={v}" for k, v in settings.items() if not str(k).startswith(NOT_SCALE)]
    label = " and ".join(x for x in [f"preset {preset}" if preset else "",
                                      f"overrides {' '.join(overrides)}" if overrides else ""] if x)
    return Trained(label, changed)


def analyze(info: dict, groups: dict[str, list[RunData]], spec) -> dict:
    """Tables, claims, sections and notes of one experiment's runs (its own figures are a figure job:
    figure_jobs)."""
    rows = _hook(spec, "rows")
    table = rows(groups) if rows else common_rows(groups)[:2] + [
        metric_row("Avg train loss, last 10% of steps", lambda r: r.summary.get("final_train_loss"), groups),
        metric_row("Min train loss", lambda r: r.summary.get("min_train_loss"), groups)] + common_rows(groups)[2:]
    group_defs = spec.groups_resolved if spec is not None and hasattr(spec, "groups_resolved") else {}
    trained = trained_here(info, spec)
    claims = evaluate_claims(spec.claim_specs, groups, group_defs, trained) if spec is not None else []
    sections, notes = {}, []
    hook = _hook(spec, "sections")
    if hook:
        sections.update(hook(groups))
    hook = _hook(spec, "notes")
    if hook:
        notes += hook(groups)
    return {"table": table, "claims": claims, "sections": sections, "notes": notes,
            "trained": trained}


def full_probes(spec, figures: str) -> tuple[str, ...] | None:
    """The probes drawn in full: None for all of them, else the experiment's probe_figures."""
    check_figure_set(figures)
    return None if figures == "all" else tuple(getattr(spec, "probe_figures", None) or ())


def figure_jobs(groups: dict[str, list[RunData]], spec, figures: str = "summary") -> dict:
    """{job name: job} of the report's figures: training curves, the probe figures drawn in full, the overview of
    the others, the experiment's own."""
    from .probe_data import overview_job, probe_figure_jobs

    full = full_probes(spec, figures)
    jobs = {"loss": lambda: loss_figures(groups), **probe_figure_jobs(groups, full)}
    overview = overview_job(groups, full)
    if overview is not None:
        jobs[OVERVIEW] = overview
    hook = _hook(spec, "figures")
    if hook:
        jobs["own"] = lambda: hook(groups)
    return jobs


OVERVIEW = "probes-overview"   # the job of the collapsed probes' figure


def figure_groups(groups: dict[str, list[RunData]], meanwhile, experiment: str, spec=None,
                  cache: figcache.FigureCache | None = None, keys: dict[str, str] | None = None,
                  figures: str = "summary") -> list[render.Section]:
    """The report's figures in groups: training curves, one group per probe (registry order), the
    experiment's own; each job taken from `cache` where its key (`keys[job]`) matches, the others drawn and
    encoded on every core (drawing.py) while `meanwhile` (the claims' statistics) runs here. A probe figure
    that is a str is the sentence that replaces an all-zero figure (probe_data._draw)."""
    from ..probes import PROBES, describe
    from . import drawing

    jobs = figure_jobs(groups, spec, figures)
    cache = cache or figcache.FigureCache(None)
    keys = keys or {}
    encoded = {name: cache.get(name, keys[name]) if name in keys else None for name in jobs}
    todo = [name for name, got in encoded.items() if got is None]
    if todo:
        drawn, _ = drawing.draw([jobs[n] for n in todo], meanwhile=lambda: (meanwhile(), {})[1])
        encoded.update(zip(todo, drawn))
        cache.put_all({name: (keys[name], encoded[name]) for name in todo if name in keys})
    else:
        meanwhile()
    probes = {file: shown for name, job in encoded.items() if name.startswith("probe:") for file, shown in job.items()}
    out = [render.Section("Training curves", level=3, figures=_shown(encoded["loss"]))]
    if encoded.get(OVERVIEW):
        out.append(render.Section(render.OVERVIEW_TITLE, level=3, about=_collapsed_note(spec, figures),
                                  figures=_shown(encoded[OVERVIEW])))
    for name, cls in PROBES.items():
        here = {f.file: probes[f.file] for f in cls.figures if f.file in probes}
        if here:
            out.append(render.Section(f"Probe: {name}", level=3, about=describe(cls), figures=_shown(here)))
    if encoded.get("own"):
        out.append(render.Section(f"{experiment}: this experiment's figures", level=3, figures=_shown(encoded["own"])))
    job_of = {file: name for name, figs in encoded.items() for file in figs}
    cache.put_layout(keys.get(LAYOUT), [{"title": g.title, "level": g.level, "about": g.about,
                                         "figures": [[f.file, job_of[f.file]] for f in g.figures]} for g in out])
    return out


LAYOUT = "layout"   # the figure cache's entry naming the groups, their figures and the job each came from


def _collapsed_note(spec, figures: str) -> str:
    from .probe_data import collapsed_figures

    files = [f.file for _, f in collapsed_figures(full_probes(spec, figures))]
    return (f"{len(files)} probe figures are not drawn in full ({', '.join(files)}); their per-layer curves are "
            "this overview's panels, and `normlab report <this folder> --figures all` draws each in full.")


def selection_key(data: str, code: str, name: str, spec, figures: str) -> str:
    """A job's cache key; the layout's and the overview's also name the probes drawn in full (experiment.yaml's
    probe_figures is not in the code key)."""
    full = full_probes(spec, figures)
    chosen = "all" if full is None else ",".join(sorted(full))
    return figcache.job_key(data, code, f"{name}|{chosen}" if name in (LAYOUT, OVERVIEW) else name)


def _remove_undrawn_probe_figures(exp_dir: Path, images: dict) -> None:
    """A probe figure an earlier build drew (`--figures all`) that this one did not: its file would sit beside the
    report as if it belonged to it."""
    for path in exp_dir.glob("probe_*.png"):
        if path.name not in images:
            path.unlink(missing_ok=True)


def cached_figure_groups(cache: figcache.FigureCache, keys: dict[str, str],
                         job_key=None) -> list[render.Section] | None:
    """The figure groups of an earlier build of the same data and code, from the cache alone (no probe registry, so
    no torch; no matplotlib), or None where the layout or any of its jobs is missing, stale or corrupt."""
    layout = cache.get_layout(keys[LAYOUT])
    if layout is None:
        return None
    jobs: dict[str, dict] = {}
    out = []
    try:
        for g in layout:
            figures = {}
            for file, job in g["figures"]:
                if job not in jobs:
                    got = cache.get(job, job_key(job) if job_key else figcache.job_key(keys["data"], keys["code"], job))
                    if got is None:
                        return None
                    jobs[job] = got
                figures[file] = jobs[job][file]
            out.append(render.Section(g["title"], level=g["level"], about=g["about"], figures=_shown(figures)))
    except (KeyError, TypeError, ValueError):
        return None
    return out


def _closing_figures():
    from . import plots

    return plots.closing_new_figures()


def _shown(figures: dict) -> list:
    """(PNG bytes or sentence, caption) by file -> render.Shown entries."""
    return [render.Shown(name, caption, text=fig) if isinstance(fig, str) else
            render.Shown(name, caption, png=fig) for name, (fig, caption) in figures.items()]


def missing_runs(runs: list[RunData]) -> list[str]:
    return [f"{r.run_dir.name} ({r.status})" for r in runs if not r.finished]


def build_report(exp_dir: str | Path, spec=None, figures: str = "summary") -> dict[str, Path]:
    """Write the report files into exp_dir and return their paths. `figures`: FIGURE_SETS."""
    import sys

    full_probes(spec, figures)   # a bad choice is refused before anything is read
    if "matplotlib.pyplot" not in sys.modules:   # a re-report from the cache never imports matplotlib
        return _build_report(Path(exp_dir), spec, figures)
    from . import plots

    with plots.closing_new_figures():
        return _build_report(Path(exp_dir), spec, figures)


def _build_report(exp_dir: Path, spec, figures: str) -> dict[str, Path]:
    info, runs = load_experiment_runs(exp_dir)
    groups = by_variant(runs, info.get("variants", []))
    result: dict = {}

    def analyzed() -> None:   # the claims' statistics (~0.8 s for prepost) run while the children draw
        result.update(analyze(info, groups, spec))

    # Figures are cached only from finished runs (nothing writes their files any more) and only when the files
    # hashed after drawing are the ones hashed before (figcache.FigureCache.put_if): a run written meanwhile by
    # another process never leaves an entry whose key names data other than what was drawn.
    run_dirs = [r.run_dir for r in runs]
    data = figcache.data_key(exp_dir, run_dirs)
    code = figcache.code_key([spec.path] if spec is not None and hasattr(spec, "path") else [])
    cache = figcache.FigureCache(exp_dir / figcache.FOLDER if all(r.finished for r in runs) else None,
                                 still=lambda: figcache.data_key(exp_dir, run_dirs) == data)
    keys = {"data": data, "code": code, LAYOUT: selection_key(data, code, LAYOUT, spec, figures)}
    shown = cached_figure_groups(cache, keys, lambda job: selection_key(data, code, job, spec, figures))
    if shown is None:
        keys.update({name: selection_key(data, code, name, spec, figures) for name in figure_jobs(groups, spec, figures)})
        with _closing_figures():
            shown = figure_groups(groups, analyzed, info.get("name") or exp_dir.name, spec, cache, keys, figures)
    else:
        analyzed()
    images = {}
    for f in (f for g in shown for f in g.figures):
        if f.png is None:
            (exp_dir / f.file).unlink(missing_ok=True)  # an earlier build's figure, now a sentence
            continue
        images[f.file] = f.png
        atomic_write_bytes(exp_dir / f.file, f.png)
    _remove_undrawn_probe_figures(exp_dir, images)
    setup_md, setup = setup_table.markdown(info, runs, getattr(spec, "seed_setup", {}) or {})
    replication = (exp_dir / "replication.md").read_text() if (exp_dir / "replication.md").exists() else ""
    lead = _hook(spec, "LEAD_FIGURE")  # figures.py names the figure that answers the experiment's question
    page = render.page(info, result, groups, runs, shown, setup_md, missing_runs(runs), replication, lead=lead)
    atomic_write_text(exp_dir / "report.md", render.markdown(page))
    atomic_write_text(exp_dir / "report.html", render.html(page, images))
    results = {
        "experiment": info.get("name"), "seed_ref": info.get("seed_ref"), "source": info.get("source"),
        "built": now(), "seeds": info.get("seeds"), "preset": info.get("preset"),
        "overrides": info.get("overrides"), "setup": setup,
        "table": {row.metric: {v: {"mean": s.mean, "std": s.std, "values": s.values} for v, s in row.cells.items()}
                  for row in result["table"]},
        "claims": [c.as_dict() for c in result["claims"]],
        "verdict_words": list(evidence.VERDICTS),
        "missing": missing_runs(runs),
        "runs": [{"name": r.run_dir.name, "variant": r.variant, "seed": r.seed, **{k: v for k, v in r.summary.items()
                  if k != "traceback"}} for r in runs],
        "samples": {v: [r.samples for r in rs] for v, rs in groups.items()},
    }
    extra = _hook(spec, "data")
    if extra:
        results.update(extra(groups))
    write_json(exp_dir / "results.json", results)
    atomic_write_text(exp_dir / "results.csv", runs_csv(results["runs"]))
    atomic_write_text(exp_dir / "claims.csv", claims_csv(results["claims"]))
    _summaries[exp_dir.resolve()] = ((exp_dir / "results.json").read_bytes(), _summary_parts(result, groups, runs))
    return {n: exp_dir / n for n in ["report.md", "report.html", "results.json", "results.csv", "claims.csv", *images]}


RUN_COLUMNS = ("name", "variant", "seed", "status", "steps_done", "val_loss", "val_bpb", "val_ppl", "final_train_loss",
               "min_train_loss", "diverged_step", "diverged_reason", "params", "tokens_seen", "train_time_s")
CLAIM_COLUMNS = ("id", "verdict", "test", "n", "effect", "ci95_low", "ci95_high", "units", "p", "p_holm", "untestable",
                 "text")


def _csv(header: tuple, rows: list[list]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue()


def runs_csv(runs: list[dict]) -> str:
    """results.csv: one row per run (results.json's `runs`, the summary numbers a spreadsheet wants)."""
    return _csv(RUN_COLUMNS, [[r.get(c) for c in RUN_COLUMNS] for r in runs])


def claims_csv(claims: list[dict]) -> str:
    """claims.csv: one row per claim, its verdict and the deciding part's effect, CI and p values."""
    rows = []
    for c in claims:
        e = c.get("effect") or {}
        ci = e.get("ci95") or [None, None]
        rows.append([c.get("id"), c.get("verdict"), c.get("test"), c.get("n"), e.get("estimate"), ci[0], ci[1],
                     e.get("units"), c.get("p"), c.get("p_holm"), c.get("untestable"), c.get("text")])
    return _csv(CLAIM_COLUMNS, rows)


# exp_dir -> (the results.json this process wrote, what its summary shows): `normlab run` prints the summary of the
# report it just built without analysing every run a second time (lr-sweep: 175 runs read again, its figures redrawn)
_summaries: dict[Path, tuple[bytes, tuple]] = {}


def _summary_parts(result: dict, groups: dict, runs: list[RunData]) -> tuple:
    return result["claims"], result["table"], list(groups), terminal.grouped_warnings(runs), len(runs)


def summary_table(exp_dir: str | Path, spec=None, width: int | None = None) -> str:
    """What `normlab run` prints at the end: the outcome line, the claims and the results as rich tables `width`
    columns wide (default: the terminal's), each distinct warning once with its count (report/terminal.py); the
    report's own analysis where this process built it and results.json has not changed since, else afresh."""
    exp_dir = Path(exp_dir)
    built = _summaries.get(exp_dir.resolve())
    results = exp_dir / "results.json"
    if built is not None and results.is_file() and results.read_bytes() == built[0]:
        return terminal.summary_text(*built[1], width=width)
    info, runs = load_experiment_runs(exp_dir)
    groups = by_variant(runs, info.get("variants", []))
    return terminal.summary_text(*_summary_parts(analyze(info, groups, spec), groups, runs),
                                 width=width)


__all__ = ["Row", "build_report", "summary_table"]
