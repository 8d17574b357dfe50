"""What `normlab run` prints at the end: the outcome line, the claims and the results as rich tables at the
terminal's width (report.md keeps the Markdown), and each distinct warning of the runs once, with how many runs
gave it. Colours are ANSI codes; click.echo drops them where the output is not a terminal.
"""
from __future__ import annotations

import io
import shutil

from . import evidence
from .render import _p, effect_text, metric_text, outcome_line

VERDICT_STYLE = {evidence.SUPPORTED: "green", evidence.CONTRADICTED: "red", evidence.NOT_ENOUGH: "yellow",
                 evidence.UNTESTABLE: "bright_black"}
MANY = 6   # more variants than this: one row per variant (the zoo), as in report.md


def terminal_width() -> int:
    """The terminal's columns; 120 where there is no terminal (a log, a pipe) and COLUMNS is unset."""
    return shutil.get_terminal_size((120, 24)).columns


def grouped_warnings(runs) -> list[tuple[str, list[str]]]:
    """(warning, the runs that gave it), each distinct warning once, in the order first seen."""
    out: dict[str, list[str]] = {}
    for r in runs:
        for w in r.summary.get("warnings") or []:
            out.setdefault(str(w), []).append(r.run_dir.name)
    return list(out.items())


def summary_text(claims, rows, variants: list[str], warnings: list[tuple[str, list[str]]], n_runs: int,
                 width: int | None = None) -> str:
    from rich.console import Console
    from rich.table import Table

    width = width or terminal_width()
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system="standard", highlight=False,
                      soft_wrap=False, emoji=False)
    console.print(f"[bold]Outcome: {outcome_line(claims)}[/bold]")
    if claims:
        table = Table(show_lines=False, expand=False, pad_edge=False, title_justify="left")
        for name, ratio, justify in (("claim", 4, "left"), ("metric (unit)", 2, "left"),
                                     ("ours: effect [95 % CI]", 3, "left"), ("p Holm", 1, "right"),
                                     ("verdict", 1, "left")):
            table.add_column(name, ratio=ratio, justify=justify, overflow="fold")
        for c in claims:
            ours = "; ".join(effect_text(p) for p in c.parts) or (f"untestable here: {c.untestable}" if c.untestable
                                                                   else c.precondition.get("reason", ""))
            table.add_row(c.spec.text, metric_text(c.spec), ours, _p(c.p_holm),
                          f"[{VERDICT_STYLE.get(c.verdict, 'default')}]{c.verdict}[/]")
        console.print(table)
    results = Table(title="Results (mean ± sd over seeds)", title_justify="left", pad_edge=False)
    if len(variants) > MANY:
        results.add_column("variant", overflow="fold")
        for row in rows:
            results.add_column(row.metric, justify="right", overflow="fold")
        for v in variants:
            results.add_row(v, *[row.cells[v].fmt(row.digits) if v in row.cells else "" for row in rows])
    else:
        results.add_column("metric", overflow="fold")
        for v in variants:
            results.add_column(v, justify="right", overflow="fold")
        for row in rows:
            results.add_row(row.metric, *[row.cells[v].fmt(row.digits) if v in row.cells else "" for v in variants])
    console.print(results)
    for text, names in warnings:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        console.print(f"[yellow]warning ({len(names)} of {n_runs} runs: {shown}):[/yellow] {text}")
    return out.getvalue().rstrip("\n")


__all__ = ["grouped_warnings", "summary_text", "terminal_width"]
