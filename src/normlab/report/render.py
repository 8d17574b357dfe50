"""The report as Markdown, and that Markdown as one self-contained HTML page (markdown-it-py).

Verdicts are words (supported, contradicted, not enough evidence, untestable here), never emoji;
table cells are escaped, so a '|' inside a metric name cannot break a table.
"""
from __future__ import annotations

import base64
import html as _html
import math
import re

from . import evidence
from .setup_table import modified_title

VERDICT_ABOUT = ("**supported**: the 95 % CI of the effect excludes 0 in the claimed direction and the Holm-adjusted "
                 "p < 0.05; **contradicted**: the CI excludes 0 the other way; **not enough evidence**: neither (or "
                 "fewer than 3 seeds; the power line says how many seeds the observed spread would need); "
                 "**untestable here**: the claim's phenomenon is absent at this scale (its precondition failed). "
                 "Tests are paired by seed (same seed = same data order and init) unless stated.")


def cell(text) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def title(info: dict) -> str:
    base = info.get("title") or info.get("name") or "normlab report"
    mod = modified_title(info)
    return f"{base} ({mod})" if mod else base


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"


def _p(p) -> str:
    if p is None or p != p:
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def effect_text(part) -> str:
    e = part.evidence
    if e is None:
        return "n/a"
    lo, hi = e.ci95
    size = e.effect_size or {}
    sized = f", {size.get('name')} {_fmt(size.get('value'), 2)}" if size.get("value") is not None else ""
    return f"{part.a} − {part.b}: {_fmt(e.estimate)} [{_fmt(lo)}, {_fmt(hi)}]{sized}"


def verdict_table(claims) -> str:
    if not claims:
        return "No declared claims."
    lines = ["| claim | source | ours: effect [95 % CI] | test, n | p (Holm) | verdict |", "|---|---|---|---|---|---|"]
    for c in claims:
        parts = c.parts or []
        ours = "; ".join(effect_text(p) for p in parts) or c.precondition.get("reason", "")
        main = c.main
        test = f"{main.evidence.test}, n={main.evidence.n}" if main and main.evidence else "—"
        lines.append(f"| {cell(c.spec.text)} | {cell(c.spec.seed_value or '—')} | {cell(ours)} | {cell(test)} | "
                     f"{_p(c.p)} ({_p(c.p_holm)}) | **{c.verdict}** |")
    return "\n".join(lines)


def claim_notes(claims) -> list[str]:
    out = []
    for c in claims:
        bits = [f"source: {c.spec.source}"] if c.spec.source else []
        bits += c.reasons
        for p in c.parts:
            if p.evidence is not None and p.verdict == evidence.NOT_ENOUGH and p.evidence.n_a is None:
                bits.append(f"{p.a} {p.op} {p.b}: {evidence.power_line(p.evidence, p.seed_effect)}")
            if p.evidence is not None and p.evidence.check:
                bits.append(f"{p.a} {p.op} {p.b}: check {p.evidence.check['test']} p = {_p(p.evidence.check['p'])}")
        if c.spec.note:
            bits.append(c.spec.note)
        out.append(f"- **{c.spec.id}** ({c.verdict}): " + "; ".join(bits))
    return out


def results_table(rows, variants: list[str]) -> str:
    if len(variants) > 6:  # many variants (the zoo): one row per variant reads better than 30 columns
        lines = ["| Variant | " + " | ".join(cell(r.metric) for r in rows) + " |", "|---|" + "---|" * len(rows)]
        for v in variants:
            lines.append(f"| {cell(v)} | " + " | ".join(r.cells[v].fmt(r.digits) if v in r.cells else ""
                                                          for r in rows) + " |")
        return "\n".join(lines)
    lines = ["| Metric | " + " | ".join(map(cell, variants)) + " |", "|---|" + "---|" * len(variants)]
    for row in rows:
        lines.append(f"| {cell(row.metric)} | " + " | ".join(row.cells[v].fmt(row.digits) if v in row.cells else ""
                                                             for v in variants) + " |")
    return "\n".join(lines)


def _samples(groups, most: int = 5) -> list[str]:
    variants = list(groups)
    first = {v: (rs[0].samples if rs else []) for v, rs in groups.items()}
    n = min(most, max((len(s) for s in first.values()), default=0))
    if not n:
        return []
    lines = ["| variant | " + " | ".join(str(i + 1) for i in range(n)) + " |", "|---|" + "---|" * n]
    for v in variants:
        lines.append(f"| {cell(v)} | " + " | ".join(f"`{cell(s)}`" if s else "(empty)" for s in
                                                     (first[v] + [""] * n)[:n]) + " |")
    return ["## Samples (first seed of each variant)", "", *lines, ""]


def _runs_table(runs) -> list[str]:
    lines = ["| run | status | steps done | final val loss | val bits/byte | diverged at |", "|---|---|---|---|---|---|"]
    for r in runs:
        s = r.summary
        val, bpb = s.get("val_loss"), s.get("val_bpb")
        lines.append(f"| {cell(r.run_dir.name)} | {r.status} | {s.get('steps_done', '')} | "
                     f"{'' if not isinstance(val, (int, float)) else f'{val:.3f}'} | "
                     f"{'' if not isinstance(bpb, (int, float)) else f'{bpb:.3f}'} | "
                     f"{s.get('diverged_step') if s.get('diverged_step') is not None else ''} |")
    return ["## Runs", "", *lines, ""]


def markdown(info, result, groups, runs, images, setup_md, missing, replication="", lead: str | None = None) -> str:
    """The report; `lead` (a file in `images`) is the figure that answers the question: shown right after the
    claims table instead of among the other figures."""
    seeds = info.get("seeds") or sorted({r.seed for r in runs})
    parts = [f"# {title(info)}", ""]
    source = f"Reproduces seed {info['seed_ref']}. " if info.get("seed_ref") else ""
    parts.append(f"{source}Built {_now()} from {len(runs)} runs ({len(groups)} variants × seeds "
                 f"{', '.join(map(str, seeds))}).")
    if info.get("description"):
        parts += ["", info["description"].strip()]
    if missing:
        parts += ["", f"**Partial sweep**: {len(missing)} of {len(runs)} runs have not finished and are left out: "
                  + ", ".join(missing) + "."]
    parts += ["", "## Setup vs the source", "", setup_md, ""]
    parts += ["## Claims", "", verdict_table(result["claims"]), ""]
    if lead:
        parts += [f"![{lead}]({lead})", "", f"*{images[lead][1]}*" if images[lead][1] else "", ""]
    parts += [VERDICT_ABOUT, ""]
    parts += claim_notes(result["claims"]) + [""]
    if replication:
        parts += [replication.strip(), ""]
    parts += ["## Results (mean ± sd over seeds)", "", results_table(result["table"], list(groups)), ""]
    for heading, body in result["sections"].items():
        parts += [f"## {heading}", "", body.strip(), ""]
    warnings = [f"- {r.run_dir.name}: {w}" for r in runs for w in r.summary.get("warnings") or []]
    if warnings:
        parts += ["## Warnings", "", *warnings, ""]
    rest = {name: image for name, image in images.items() if name != lead}
    if rest:
        parts += ["## Figures", ""]
        for name, (_, caption) in rest.items():
            parts += [f"![{name}]({name})", "", f"*{caption}*" if caption else "", ""]
    parts += _samples(groups) + _runs_table(runs)
    parts += [f"- {n}" for n in result["notes"]]
    return "\n".join(parts) + "\n"


def _now() -> str:
    from ..rundir import now

    return now()


def html(markdown_text: str, images: dict[str, bytes], page_title: str) -> str:
    """Self-contained HTML: Markdown rendered by markdown-it-py (tables on), images inlined as data URIs."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = md.render(markdown_text)

    def inline(m):
        name = _html.unescape(m.group(1))
        data = images.get(name)
        return f'src="data:image/png;base64,{base64.b64encode(data).decode()}"' if data else m.group(0)
    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    for word in evidence.VERDICTS:
        body = body.replace(f"<strong>{word}</strong>", f'<strong class="v-{word.replace(" ", "-")}">{word}</strong>')
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
             "vertical-align:top}th{background:#f3f3f3}img{max-width:100%}"
             ".v-supported{color:#1a7f37}.v-contradicted{color:#cf222e}.v-not-enough-evidence{color:#9a6700}"
             ".v-untestable-here{color:#57606a}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_html.escape(page_title)}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")
