"""Run directories -> report.md, report.html (self-contained), results.json and PNG figures."""
from __future__ import annotations

import base64
import html
import io

from pathlib import Path

import matplotlib.pyplot as plt

from ..train.rundir import atomic_write_bytes, atomic_write_text, now, write_json
from . import plots
from .analysis import Analysis, analyze
from .probe_data import probe_figures
from .runs import RunData, by_variant, load_experiment_runs, stack_losses

VERDICT_MARK = {"reproduced": "✅ reproduced", "not reproduced": "❌ not reproduced", "inconclusive": "➖ inconclusive"}


def _task(runs: list[RunData]) -> str:
    """data.task of a variant's runs (lm, reverse, sort): losses of different tasks share no axis."""
    return next(((r.config.get("data") or {}).get("task", "lm") for r in runs if r.config), "lm")


def _figures(groups: dict[str, list[RunData]]) -> dict[str, object]:
    by_task: dict[str, dict[str, list[RunData]]] = {}
    for v, rs in groups.items():
        by_task.setdefault(_task(rs), {})[v] = rs
    figs = {}
    for i, (task, task_groups) in enumerate(by_task.items()):
        suffix = "" if i == 0 else f"_{task}"  # the first task (the LM, as variants are listed) keeps the plain names
        curves = {v: stack_losses(rs) for v, rs in task_groups.items()}
        figs[f"loss_curves{suffix}.png"] = plots.loss_panels(curves)
        figs[f"avg_loss{suffix}.png"] = plots.cumulative_average(curves)
        if any(r.val for rs in task_groups.values() for r in rs):
            figs[f"val_loss{suffix}.png"] = plots.val_curves({v: [r.val for r in rs] for v, rs in task_groups.items()})
    figs.update(probe_figures(groups))  # only when runs recorded probes (probes.every > 0)
    return figs


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _markdown_table(analysis: Analysis, variants: list[str]) -> str:
    if len(variants) > 6:  # many variants (the zoo): one row per variant reads better than 30 columns
        return _markdown_table_by_variant(analysis, variants)
    lines = ["| Metric | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for row in analysis.rows:
        cells = [row.cells[v].fmt(row.digits) if v in row.cells else "" for v in variants]
        lines.append(f"| {row.metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown_table_by_variant(analysis: Analysis, variants: list[str]) -> str:
    lines = ["| Variant | " + " | ".join(r.metric for r in analysis.rows) + " |", "|---|" + "---|" * len(analysis.rows)]
    for v in variants:
        cells = [row.cells[v].fmt(row.digits) if v in row.cells else "" for row in analysis.rows]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _samples(groups: dict[str, list[RunData]], most: int = 5) -> tuple[list[str], list[list[str]]]:
    variants = list(groups)
    first = {v: (rs[0].samples if rs else []) for v, rs in groups.items()}
    n = min(most, max((len(s) for s in first.values()), default=0))  # as many columns as there are samples
    rows = [[first[v][i] if i < len(first[v]) else "" for v in variants] for i in range(n)]
    return variants, rows


def _runs_table(runs: list[RunData]) -> str:
    lines = ["| run | status | steps done | final val loss | val bits/byte | diverged at | tokens/s |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r.summary
        val, bpb = s.get("val_loss"), s.get("val_bpb")
        lines.append(f"| {r.run_dir.name} | {r.status} | {s.get('steps_done', '')} | "
                     f"{'' if val is None else f'{val:.3f}'} | {'' if bpb is None else f'{bpb:.3f}'} | "
                     f"{s.get('diverged_step') if s.get('diverged_step') is not None else ''} | "
                     f"{s.get('tokens_per_s', '')} |")
    return "\n".join(lines)


def _warnings(runs: list[RunData]) -> list[str]:
    """Every run's leakage/plausibility warning, printed right under the numbers it qualifies."""
    lines = [f"- ⚠ {r.run_dir.name}: {w}" for r in runs for w in r.summary.get("warnings") or []]
    return ["## Warnings", "", *lines, ""] if lines else []


def render_markdown(info, analysis, groups, runs, figure_names) -> str:
    variants = list(groups)
    parts = [f"# {info.get('title') or info.get('name')}", ""]
    if info.get("seed_ref"):
        parts.append(f"Reproduces seed {info['seed_ref']}. Built {now()} by normlab from {len(runs)} runs "
                     f"({len(variants)} variants × {len(info.get('seeds', [0]))} seeds); numbers are mean ± std over seeds.")
    if info.get("description"):
        parts += ["", info["description"].strip()]
    parts += ["", "## Results", "", _markdown_table(analysis, variants), ""]
    for heading, body in analysis.sections.items():
        parts += [f"## {heading}", "", body.strip(), ""]
    parts += _warnings(runs)
    if analysis.claims:
        parts += ["## The seed's claims, checked", "", "| claim | seed | ours | verdict |", "|---|---|---|---|"]
        parts += [f"| {c.text} | {c.seed_value} | {c.ours} | {VERDICT_MARK[c.verdict]} |" for c in analysis.claims]
        parts += ["", "A verdict is *inconclusive* when the gap between the means is within one seed std.", ""]
    parts += ["## Figures", ""] + [f"![{n}]({n})" for n in figure_names] + [""]
    names, rows = _samples(groups)
    if len(names) > 6:  # one row per variant, as for the results table
        rows, names = [list(col) for col in zip(*rows)] if rows else [], [f"{i + 1}" for i in range(len(rows))]
        header, labels = "| variant | ", list(groups)
    else:
        header, labels = "| # | ", [str(i + 1) for i in range(len(rows))]
    parts += ["## Samples (seed 0 of each variant)", "", header + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    parts += [f"| {label} | " + " | ".join(f"`{s}`" if s else "" for s in row) + " |" for label, row in zip(labels, rows)]
    parts += ["", "## Runs", "", _runs_table(runs), ""]
    parts += [f"- {n}" for n in analysis.notes]
    return "\n".join(parts) + "\n"


def render_html(markdown_text: str, images: dict[str, bytes], title: str) -> str:
    """A small Markdown subset (headings, tables, images, paragraphs) to self-contained HTML."""
    out, table = [], []

    def close_table():
        if table:
            head, *body = table
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>" +
                       "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body) + "</table>")
            table.clear()

    for line in markdown_text.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()).replace("`", "") for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        close_table()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("![") and "](" in line:
            name = line.split("](")[1].rstrip(")")
            data = base64.b64encode(images[name]).decode() if name in images else ""
            out.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"/></figure>')
        elif line.startswith("- "):
            out.append(f"<p>• {html.escape(line[2:])}</p>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    close_table()
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(out)}</body></html>\n")


def build_report(exp_dir: str | Path) -> dict[str, Path]:
    """Write the report files into exp_dir and return their paths."""
    exp_dir = Path(exp_dir)
    info, runs = load_experiment_runs(exp_dir)
    groups = by_variant(runs, info.get("variants", []))
    analysis = analyze(info, groups)
    images = {name: _png(fig) for name, fig in {**_figures(groups), **analysis.figures}.items()}
    for name, data in images.items():
        atomic_write_bytes(exp_dir / name, data)
    md = render_markdown(info, analysis, groups, runs, list(images))
    atomic_write_text(exp_dir / "report.md", md)
    atomic_write_text(exp_dir / "report.html", render_html(md, images, info.get("title") or info.get("name", "")))
    results = {
        "experiment": info.get("name"), "seed_ref": info.get("seed_ref"), "built": now(),
        "table": {row.metric: {v: {"mean": s.mean, "std": s.std, "values": s.values} for v, s in row.cells.items()}
                  for row in analysis.rows},
        "claims": [c.as_dict() for c in analysis.claims],
        **analysis.data,
        "runs": [{"name": r.run_dir.name, "variant": r.variant, "seed": r.seed, **{k: v for k, v in r.summary.items()
                  if k != "traceback"}} for r in runs],
        "samples": {v: [r.samples for r in rs] for v, rs in groups.items()},
    }
    write_json(exp_dir / "results.json", results)
    paths = {n: exp_dir / n for n in ["report.md", "report.html", "results.json", *images]}
    return paths


def markdown_table_only(exp_dir: str | Path) -> str:
    info, runs = load_experiment_runs(Path(exp_dir))
    groups = by_variant(runs, info.get("variants", []))
    return _markdown_table(analyze(info, groups), list(groups))


__all__ = ["build_report", "markdown_table_only"]
