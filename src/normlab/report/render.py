"""The report as a list of sections, written as Markdown and as one self-contained HTML page.

`page(...)` lays the report out (intro, setup, claims, results, the experiment's sections, a section
per figure group, samples, runs); `markdown(page)` and `html(page, images)` write it. The HTML has a
table of contents with anchors, its figures inline (data URIs) with their captions, and its
Markdown rendered by markdown-it-py (raw HTML off). Verdicts are coloured words (supported,
contradicted, not enough evidence, untestable here), never emoji (headless Chromium on Debian has
no emoji font); every table cell goes through `cell`, so no value can break a table.
"""
from __future__ import annotations

import base64
import html as _html
import math
import re
import struct
from dataclasses import dataclass, field

from . import evidence
from .markdown import cell  # noqa: F401  (re-exported: experiments' figures use it)
from .setup_table import modified_title

VERDICT_ABOUT = ("**supported**: the 95 % CI of the effect excludes 0 in the claimed direction and the Holm-adjusted "
                 "p < 0.05; **contradicted**: the CI excludes 0 the other way; **not enough evidence**: neither (or "
                 "fewer than 3 seeds; the power line says how many seeds the observed spread would need); "
                 "**untestable here**: the claim's phenomenon is absent at this scale (its precondition failed). "
                 "Tests are paired by seed (same seed = same data order and init) unless stated.")


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


def effect_name(part) -> str:
    """What the effect is the difference of, by name: 'pre − post', 'decoder' (against 0: the value itself),
    'nonorm − 1.948' (against a stated number)."""
    try:
        against_zero = float(part.b) == 0.0
    except (TypeError, ValueError):
        against_zero = False
    return part.a if against_zero else f"{part.a} − {part.b}"


def effect_text(part) -> str:
    e = part.evidence
    if e is None:
        return "n/a"
    lo, hi = e.ci95
    size = e.effect_size or {}
    sized = f", {size.get('name')} {_fmt(size.get('value'), 2)}" if size.get("value") is not None else ""
    return f"{effect_name(part)}: {_fmt(e.estimate)} [{_fmt(lo)}, {_fmt(hi)}]{sized}"


def metric_text(spec) -> str:
    """The claim's metric with its arguments and unit: 'mean_train_loss, last 100 (nats/token)'."""
    from .metrics import METRICS

    try:
        name, kw = spec.metric_call()
    except Exception:  # noqa: BLE001  (a claim checked when it loaded; a pulled results folder may not be)
        return str(spec.metric)
    args = ", ".join(f"{k} {v}" for k, v in kw.items())
    m = METRICS.get(name)
    units = m.units if m is not None and m.units else ("share of samples" if m is not None and m.count else "")
    return f"{name}{', ' + args if args else ''}" + (f" ({units})" if units else "")


def outcome_line(claims) -> str:
    """'3 supported, 1 contradicted, 2 not enough evidence of 6 claims': the report's answer in one line."""
    if not claims:
        return "no declared claims (the results table is the outcome)"
    counts = [(w, sum(c.verdict == w for c in claims)) for w in evidence.VERDICTS]
    return ", ".join(f"{n} {w}" for w, n in counts if n) + f" of {len(claims)} claims"


P_HEADER = "p raw / Holm-adjusted"


def verdict_table(claims) -> str:
    if not claims:
        return "No declared claims."
    lines = [f"| claim | metric (unit) | source | ours: effect [95 % CI] | test, n | {P_HEADER} | verdict |",
             "|---|---|---|---|---|---|---|"]
    for c in claims:
        parts = c.parts or []
        ours = "; ".join(effect_text(p) for p in parts) or (f"untestable here: {c.untestable}" if c.untestable
                                                             else c.precondition.get("reason", ""))
        main = c.main
        test = f"{main.evidence.test}, n={main.evidence.n}" if main and main.evidence else "—"
        lines.append(f"| {cell(c.spec.text)} | {cell(metric_text(c.spec))} | {cell(c.spec.seed_value or '—')} | "
                     f"{cell(ours)} | {cell(test)} | {_p(c.p)} / {_p(c.p_holm)} | **{c.verdict}** |")
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
            lines.append(f"| {cell(v)} | " + " | ".join(cell(r.cells[v].fmt(r.digits)) if v in r.cells else ""
                                                          for r in rows) + " |")
        return "\n".join(lines)
    lines = ["| Metric | " + " | ".join(map(cell, variants)) + " |", "|---|" + "---|" * len(variants)]
    for row in rows:
        lines.append(f"| {cell(row.metric)} | " + " | ".join(cell(row.cells[v].fmt(row.digits)) if v in row.cells
                                                             else "" for v in variants) + " |")
    return "\n".join(lines)


def _samples(groups, most: int = 5) -> str:
    first = {v: (rs[0].samples if rs else []) for v, rs in groups.items()}
    n = min(most, max((len(s) for s in first.values()), default=0))
    if not n:
        return ""
    lines = ["| variant | " + " | ".join(str(i + 1) for i in range(n)) + " |", "|---|" + "---|" * n]
    for v, samples in first.items():
        lines.append(f"| {cell(v)} | " + " | ".join(cell(s) if s else "(empty)" for s in (samples + [""] * n)[:n])
                     + " |")
    return "\n".join(lines)


def _num(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else ""


def _runs_table(runs) -> str:
    lines = ["| run | status | steps done | final val loss | val bits/byte | diverged at |", "|---|---|---|---|---|---|"]
    for r in runs:
        s = r.summary
        diverged = s.get("diverged_step")
        lines.append(f"| {cell(r.run_dir.name)} | {cell(r.status)} | {cell(s.get('steps_done', ''))} | "
                     f"{_num(s.get('val_loss'))} | {_num(s.get('val_bpb'))} | "
                     f"{cell(diverged) if diverged is not None else ''} |")
    return "\n".join(lines)


OVERVIEW_TITLE = "Probes at a glance"   # build.py's overview group: shown open, first of the probe figures


@dataclass
class Shown:
    """One entry of a figure group: the PNG `file` beside the report with its caption, or, where the
    figure would only draw zeros, a sentence `text` instead."""
    file: str
    caption: str = ""
    text: str = ""
    png: bytes | None = field(default=None, repr=False)


@dataclass
class Section:
    title: str
    body: str = ""                                   # Markdown
    level: int = 2
    about: str = ""                                  # one line under the heading (a figure group's subject)
    figures: list[Shown] = field(default_factory=list)
    anchor: str = ""
    collapsed: bool = False                          # HTML: a <details> the reader opens (report.md shows it all)


@dataclass
class Page:
    title: str
    intro: str
    sections: list[Section]


def page(info, result, groups, runs, figure_groups: list[Section], setup_md: str, missing,
         replication: str = "", lead: str | None = None) -> Page:
    """The report's layout, the answer first: the outcome line, the claims table and `lead` (a figure's file, the
    experiment's LEAD_FIGURE: shown under the claims table and not again), the results, the experiment's own
    sections and figures; then the setup, and what a reader opens on demand (collapsed in the HTML): how to read
    the verdicts, the generic probe figures, samples and runs. report.md has the same sections in the same order."""
    seeds = info.get("seeds") or sorted({r.seed for r in runs})
    claims = result["claims"]
    intro = [f"**Outcome: {outcome_line(claims)}.**"]
    trained = result.get("trained")
    if trained is not None and "smoke" in (info.get("preset") or ""):
        intro.append(f"**Smoke run ({trained.label})**: it checks the plumbing (every variant trains, the probes "
                     "record, the report builds), not the science: a few steps of a tiny model cannot test the "
                     "source's claims, whatever the verdicts below read.")
    if missing:
        intro.append(f"**Partial sweep**: {len(missing)} of {len(runs)} runs have not finished and are left out: "
                     + ", ".join(missing) + ".")
    source = f"Reproduces seed {info['seed_ref']}. " if info.get("seed_ref") else ""
    intro.append(f"{source}Built {_now()} from {len(runs)} runs ({len(groups)} variants × seeds "
                 f"{', '.join(map(str, seeds))}); the setup, the probes, samples and runs follow the results.")
    about = "\n\n".join([VERDICT_ABOUT, "\n".join(claim_notes(claims))])
    led = [f for g in figure_groups for f in g.figures if f.file == lead and f.png is not None][:1]
    for g in figure_groups:
        g.figures = [f for f in g.figures if f not in led]
    sections = [Section("Claims", verdict_table(claims), figures=led),
                Section("Reading the verdicts", about, level=3, collapsed=True)] if claims or led else []
    if replication.strip():
        heading, _, body = replication.strip().partition("\n")
        sections.append(Section(heading.lstrip("# ").strip(), body) if heading.startswith("#")
                        else Section("Replication", replication))
    sections.append(Section("Results (mean ± sd over seeds)", results_table(result["table"], list(groups))))
    sections += [Section(heading, body.strip()) for heading, body in result["sections"].items()]
    warnings = [f"- {cell(r.run_dir.name)}: {w}" for r in runs for w in r.summary.get("warnings") or []]
    if warnings:
        sections.append(Section("Warnings", "\n".join(warnings)))
    shown = [g for g in figure_groups if g.figures]
    probes = [g for g in shown if g.title.startswith("Probe: ") or g.title == OVERVIEW_TITLE]
    own = [g for g in shown if g not in probes]
    own.sort(key=lambda g: g.title == "Training curves")   # the experiment's own figures first
    if own:
        sections.append(Section("Figures", "Each caption says what the figure shows and what to look for."))
        sections += own
    described = (info.get("description") or "").strip()
    if described and trained is not None and trained.changed:
        described += (f" *(This describes the experiment as shipped; these runs differ by {trained.label}: "
                      + ", ".join(trained.changed) + ". The table has the values used.)*")
    sections.append(Section("Setup vs the source", "\n\n".join(x for x in [described, setup_md] if x)))
    if probes:
        full = [g for g in probes if g.title != OVERVIEW_TITLE]
        parts = (["first an overview of their per-layer curves"] if len(full) < len(probes) else []) + (
            [f"{len(full)} groups drawn in full, each collapsed (open one to see its figures)"] if full else [])
        sections.append(Section("Probe figures", about=f"The probes every run records: {'; '.join(parts)}."))
        for g in full:
            g.collapsed = True
        sections += sorted(probes, key=lambda g: g.title != OVERVIEW_TITLE)
    samples = _samples(groups)
    if samples:
        sections.append(Section("Samples (first seed of each variant)", samples, collapsed=True))
    sections.append(Section("Runs", _runs_table(runs), collapsed=True))
    if result["notes"]:
        sections.append(Section("Notes", "\n".join(f"- {n}" for n in result["notes"])))
    _anchor(sections)
    return Page(title(info), "\n\n".join(intro), sections)


def _anchor(sections: list[Section]) -> None:
    """A unique id per heading, from its words (github-like: lowercase, dashes)."""
    seen: dict[str, int] = {}
    for sec in sections:
        base = re.sub(r"[^a-z0-9]+", "-", sec.title.lower()).strip("-") or "section"
        seen[base] = seen.get(base, 0) + 1
        sec.anchor = base if seen[base] == 1 else f"{base}-{seen[base]}"


def markdown(p: Page) -> str:
    parts = [f"# {p.title}", "", p.intro, ""]
    for sec in p.sections:
        parts += ["#" * sec.level + " " + sec.title, ""]
        parts += [sec.about, ""] if sec.about else []
        parts += [sec.body.strip(), ""] if sec.body.strip() else []
        for f in sec.figures:
            parts += [f.text, ""] if f.text else [f"![{f.file}]({f.file})", "", f"*{f.caption}*" if f.caption else "",
                                                   ""]
    return "\n".join(parts).rstrip() + "\n"


def _now() -> str:
    from ..rundir import now

    return now()


STYLE = """
body{font-family:system-ui,"DejaVu Sans",sans-serif;max-width:1240px;margin:1.5em auto;padding:0 1.2em;color:#1f2328;
line-height:1.45}
h1{font-size:1.7em;margin-bottom:.3em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.8em}
h3{margin-top:1.6em}a{color:#0969da}
nav.toc{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.3em 1.2em;margin:1em 0}
nav.toc summary{cursor:pointer}nav.toc details>ul{columns:2 22em}
nav.toc ul{margin:.2em 0;padding-left:1.2em}nav.toc details>ul{padding-left:0;list-style:none}
nav.toc li{break-inside:avoid}
.table{overflow-x:auto;margin:1em 0}table{border-collapse:collapse}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
tbody tr:nth-child(even){background:#fbfcfd}
figure{margin:1.2em 0 2em}figure img{max-width:100%;height:auto;display:block;border:1px solid #eee}
figcaption{color:#444;font-size:.92em;max-width:60em;margin-top:.4em}
p.about{color:#57606a;margin-top:-.4em}p.nothing{background:#f6f8fa;border-left:4px solid #1a7f37;padding:.4em .8em}
.v-supported{color:#1a7f37}.v-contradicted{color:#cf222e}.v-not-enough-evidence{color:#9a6700}
.v-untestable-here{color:#57606a}
details>summary{cursor:pointer}details>summary>h2,details>summary>h3{display:inline-block;margin:.6em 0}
"""


def _md():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.add_render_rule("table_open", lambda self, tokens, idx, options, env: '<div class="table"><table>\n')
    md.add_render_rule("table_close", lambda self, tokens, idx, options, env: "</table></div>\n")
    return md


def _size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    return struct.unpack(">II", data[16:24])


def _figure(md, f: Shown, images: dict[str, bytes]) -> str:
    if f.text:
        return f'<p class="nothing">{md.renderInline(f.text)}</p>'
    data = images.get(f.file)
    if data is None:
        return f'<p class="nothing">{_html.escape(f.file)}: not drawn</p>'
    size = _size(data)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    src = "data:image/png;base64," + base64.b64encode(data).decode()
    return (f'<figure id="fig-{_html.escape(f.file.rsplit(".", 1)[0])}"><img src="{src}" alt="{_html.escape(f.file)}"'
            f'{dims}><figcaption>{md.renderInline(f.caption)}</figcaption></figure>')


def _toc(sections: list[Section]) -> str:
    """Contents: each level-2 section, with the level-3 ones under it (the figure groups) nested."""
    tree: list[tuple[Section, list[Section]]] = []
    for sec in sections:
        if sec.level > 2 and tree:
            tree[-1][1].append(sec)
        else:
            tree.append((sec, []))
    link = lambda sec: f'<a href="#{sec.anchor}">{_html.escape(sec.title)}</a>'  # noqa: E731
    items = [f"<li>{link(sec)}" + (f"<ul>{''.join(f'<li>{link(c)}</li>' for c in subs)}</ul>" if subs else "")
             + "</li>" for sec, subs in tree]
    return (f'<nav class="toc"><details><summary><strong>Contents</strong></summary><ul>{"".join(items)}</ul>'
            "</details></nav>")


def _verdict_words(body: str) -> str:
    for word in evidence.VERDICTS:
        body = body.replace(f"<strong>{word}</strong>", f'<strong class="v-{word.replace(" ", "-")}">{word}</strong>')
    return body


def html(p: Page, images: dict[str, bytes]) -> str:
    """One self-contained page: a table of contents, each section with its anchor, figures inlined."""
    md = _md()
    body = [f"<h1>{_html.escape(p.title)}</h1>", md.render(p.intro)]
    for i, sec in enumerate(p.sections):
        heading = f'<h{sec.level} id="{sec.anchor}">{_html.escape(sec.title)}</h{sec.level}>'
        body.append(f"<details><summary>{heading}</summary>" if sec.collapsed else heading)
        if sec.about:
            body.append(f'<p class="about">{md.renderInline(sec.about)}</p>')
        if sec.body.strip():
            body.append(md.render(sec.body))
        body += [_figure(md, f, images) for f in sec.figures]
        if sec.collapsed:
            body.append("</details>")
        if i == 0:   # the contents come after the answer (the first section: the claims and the lead figure)
            body.append(_toc(p.sections))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_html.escape(p.title)}</title><style>{STYLE.strip()}</style></head>\n<body>\n"
            + _verdict_words("\n".join(body)) + "\n</body></html>\n")
