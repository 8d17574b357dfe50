"""`normlab compare DIR_A DIR_B`: two experiment folders' results side by side, from their results.json alone.

The claims by id (verdict and effect on each side, and whether the verdicts agree: report/replication.py's
words), then every metric of the results table per variant (mean ± sd on each side and B - A). Two folders of
the same experiment (other seeds, a preset, overrides) compare claim by claim; two experiments compare the claims
and variants they share, and say how many they do not.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from ..config import ConfigError
from ..rundir import read_json
from .replication import _effect, outcome


def load_results(folder: str | Path) -> dict:
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise ConfigError(f"{folder}: no results.json there (an experiment folder after `normlab run` or "
                          "`normlab report`)")
    try:
        results = read_json(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot be read ({err})") from None
    if not isinstance(results, dict):
        raise ConfigError(f"{path}: not a results.json (a JSON object)")
    return results


def _setup(results: dict) -> str:
    bits = [f"seeds {results.get('seeds')}"]
    if results.get("preset"):
        bits.append(f"preset {results['preset']}")
    if results.get("overrides"):
        bits.append("overrides " + " ".join(map(str, results["overrides"])))
    return f"{results.get('experiment')}: " + ", ".join(bits)


def _mean(cell: dict | None) -> str:
    if not isinstance(cell, dict) or cell.get("mean") is None:
        return ""
    mean, sd = cell["mean"], cell.get("std")
    if float(mean).is_integer() and not sd:   # counts, parameters: 25,968, not 2.597e+04
        return f"{int(mean):,}"
    return f"{mean:.4g}" + (f" ± {sd:.2g}" if isinstance(sd, (int, float)) and math.isfinite(sd) and sd else "")


def _delta(a: dict | None, b: dict | None) -> str:
    if not (isinstance(a, dict) and isinstance(b, dict)) or a.get("mean") is None or b.get("mean") is None:
        return ""
    return f"{b['mean'] - a['mean']:+.3g}"


def compare_text(dir_a: str | Path, dir_b: str | Path, width: int | None = None) -> str:
    from rich.console import Console
    from rich.table import Table

    from .terminal import VERDICT_STYLE, terminal_width

    a, b = load_results(dir_a), load_results(dir_b)
    out = io.StringIO()
    console = Console(file=out, width=width or terminal_width(), force_terminal=True, color_system="standard",
                      highlight=False, emoji=False)
    console.print(f"[bold]A[/bold] {dir_a} ({_setup(a)})")
    console.print(f"[bold]B[/bold] {dir_b} ({_setup(b)})")
    claims_a = {c["id"]: c for c in a.get("claims") or [] if isinstance(c, dict) and "id" in c}
    claims_b = {c["id"]: c for c in b.get("claims") or [] if isinstance(c, dict) and "id" in c}
    shared = [i for i in claims_a if i in claims_b]
    if shared:
        table = Table(title="Claims", title_justify="left", pad_edge=False)
        for name, ratio in (("claim", 4), ("A: verdict, effect [95 % CI]", 3), ("B: verdict, effect [95 % CI]", 3),
                            ("A vs B", 1)):
            table.add_column(name, ratio=ratio, overflow="fold")
        for i in shared:
            ca, cb = claims_a[i], claims_b[i]
            style = lambda c: VERDICT_STYLE.get(c.get("verdict"), "default")  # noqa: E731
            table.add_row(ca.get("text") or i, f"[{style(ca)}]{ca.get('verdict')}[/], {_effect(ca)}",
                          f"[{style(cb)}]{cb.get('verdict')}[/], {_effect(cb)}",
                          "same verdict" if ca.get("verdict") == cb.get("verdict")
                          else outcome(ca.get("verdict"), cb.get("verdict")))
        console.print(table)
        same = sum(claims_a[i].get("verdict") == claims_b[i].get("verdict") for i in shared)
        console.print(f"{same} of {len(shared)} shared claims have the same verdict")
    only = len(claims_a) + len(claims_b) - 2 * len(shared)
    if only:
        console.print(f"{only} claim(s) appear on one side only (not compared)")
    table_a, table_b = a.get("table") or {}, b.get("table") or {}
    metrics = [m for m in table_a if m in table_b]
    variants = [v for m in metrics for v in table_a[m] if v in table_b[m]]
    variants = list(dict.fromkeys(variants))
    if metrics and variants:
        table = Table(title="Results (mean ± sd over seeds; B - A)", title_justify="left", pad_edge=False)
        for name, justify in (("metric", "left"), ("variant", "left"), ("A", "right"), ("B", "right"),
                              ("B - A", "right")):
            table.add_column(name, justify=justify, overflow="fold")
        for m in metrics:
            for v in variants:
                if v in table_a[m] or v in table_b[m]:
                    ca, cb = table_a[m].get(v), table_b[m].get(v)
                    table.add_row(m, v, _mean(ca), _mean(cb), _delta(ca, cb))
        console.print(table)
    elif not shared:
        console.print("nothing in common to compare: no shared claims, metrics or variants")
    return out.getvalue().rstrip("\n")


__all__ = ["compare_text", "load_results"]
