"""The HTML report as a reader gets it: rendered in headless Chromium (no console error, every image
decodes, a screenshot that is not blank), its contents and anchors, escaped table cells, page size,
and the figures' readability (heatmap text colours, integer ticks, legends outside the data,
all-zero figures replaced by a sentence). Fixture run directories with probe data, no training."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from normlab.experiments import load_experiment
from normlab.report import build_report

from reportfixtures import write_probed_experiment

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
# marks, after load, how many images the page has and how many decoded (naturalWidth > 0)
PROBE_SCRIPT = ('<script>window.addEventListener("load", () => { const i = [...document.images]; '
                'document.body.setAttribute("data-images", i.length + ":" + '
                'i.filter(x => x.complete && x.naturalWidth > 0).length); });</script>')
PREPOST = {"pre": 2.0, "post": 2.6, "none": 2.1}
ZOO_VARIANTS = 12   # > plots.MANY: the small-multiple and ranked figures


def _zoo_config(variant):
    kind, _, placement = variant.partition("-")
    return {"model": {"vocab_size": 27, "norm": {"kind": kind, "placement": placement or kind}},
            "data": {"task": "lm"}}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """{name: (experiment dir, paths)}: prepost (3 variants x 5 seeds) and a zoo of 12 variants x 2 seeds,
    both with probe scalars and probes/step_N.npz."""
    out = {}
    root = tmp_path_factory.mktemp("reports")
    write_probed_experiment(root / "prepost", "prepost", list(PREPOST), range(5), level_of=PREPOST.get,
                            seed_ref="003", preset=None, overrides=[])
    zoo = list(load_experiment("zoo").variants)[:ZOO_VARIANTS]
    write_probed_experiment(root / "zoo", "zoo", zoo, range(2), config_of=_zoo_config, preset=None, overrides=[])
    for name in ("prepost", "zoo"):   # every probe figure in full: the pages with the most images and groups
        out[name] = (root / name, build_report(root / name, load_experiment(name), "all"))
    return out


def _chromium(page: Path, tmp_path: Path, shot: Path) -> tuple[str, str]:
    """(DOM after load, Chromium's log) of `page`, with a 1280 x 4000 screenshot written to `shot`."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":   # CI must render: .ci/run installs Chromium
            pytest.fail("headless Chromium is needed under CI=true: apt-get install -y chromium chromium-driver")
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium chromium-driver; .ci/run "
                    "installs it and runs these with CI=true)")
    profile = tmp_path / f"profile-{page.stem}"
    profile.mkdir()
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", f"--screenshot={shot}",
                          "--window-size=1280,4000", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, run.stderr


def _console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "Uncaught" in line or "ERROR:CONSOLE" in line
            or ("CONSOLE" in line and "rror" in line)]


def _with_probe(html_path: Path) -> Path:
    probed = html_path.with_name("report-probed.html")
    probed.write_text(html_path.read_text().replace("</body>", PROBE_SCRIPT + "</body>"))
    return probed


def test_the_checks_catch_a_broken_page(tmp_path):
    """The control: a thrown error and a missing image are seen, so a clean result means something."""
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html><body><p>x</p><img src="missing.png"><script>throw new Error("boom")'
                    "</script></body></html>")
    dom, log = _chromium(_with_probe(page), tmp_path, tmp_path / "broken.png")
    assert 'data-images="1:0"' in dom
    assert any("boom" in line for line in _console_errors(log)), log[-2000:]


@pytest.mark.parametrize("name", ["prepost", "zoo"])
def test_report_renders_in_headless_chromium(reports, name, tmp_path):
    exp_dir, paths = reports[name]
    html = paths["report.html"].read_text()
    n_images = html.count("<img ")
    assert n_images >= 10
    shot = tmp_path / f"{name}.png"
    dom, log = _chromium(_with_probe(paths["report.html"]), tmp_path, shot)
    assert _console_errors(log) == []
    marked = re.search(r'data-images="(\d+):(\d+)"', dom)
    assert marked, "the load handler did not run"
    assert marked.groups() == (str(n_images), str(n_images)), "an image did not decode"
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (4000, 1280)
    ink = (pixels.min(axis=2) < 200).mean()
    assert 0.02 < ink < 0.6, ink                              # text, tables and figures; not blank, not black
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50   # more than a flat page
    shutil.copy(shot, exp_dir / f"screenshot-{name}.png")


@pytest.mark.parametrize("name", ["prepost", "zoo"])
def test_page_has_contents_anchors_groups_and_no_emoji(reports, name):
    _, paths = reports[name]
    html = paths["report.html"].read_text()
    ids = set(re.findall(r'id="([^"]+)"', html))
    links = re.findall(r'href="#([^"]+)"', html)
    assert '<nav class="toc">' in html and len(links) >= 10
    assert set(links) <= ids, set(links) - ids
    for group in ("Training curves", "Probe: attn_entropy", "Probe: nan_counts", "Probe: massive_activations"):
        assert f">{group}</h3>" in html, group
    summary = shutil.copytree(reports[name][0], reports[name][0].parent / f"{name}-summary")
    short = build_report(summary, load_experiment(name))["report.html"].read_text()   # the default set
    assert '<h3 id="probes-at-a-glance">Probes at a glance</h3>' in short and ">Probe: nan_counts</h3>" in short
    assert short.count("<img ") < html.count("<img ") and "probe_overview.png" in short
    if name == "zoo":  # prepost's figures.py draws none of its own
        assert "zoo: this experiment&#x27;s figures</h3>" in html and "ranking.png" in html
    assert html.count("<figure") == html.count("<img ") == html.count("<figcaption>")
    for caption in re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S):
        assert len(caption) > 40, caption                     # each figure says what it shows
    assert 'class="v-' in html
    emoji = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B50\u2B55\uFE0F]")
    assert not emoji.search(html) and not emoji.search(paths["report.md"].read_text())


@pytest.mark.parametrize("name", ["prepost", "zoo"])
def test_page_size_stays_under_100_kb_per_figure(reports, name):
    _, paths = reports[name]
    html = paths["report.html"].read_text()
    n = html.count("<img ")
    assert len(html) < 100_000 * n, (len(html), n)
    heights = [int(h) for h in re.findall(r'<img [^>]*height="(\d+)"', html)]
    assert len(heights) == n and max(heights) <= 1300    # small multiples, not one tall column per variant


def _table_widths(md: str) -> list[tuple[int, int, str]]:
    """(header cells, row cells, row) for every table row of a Markdown text; escaped pipes do not count."""
    out, header = [], None
    for line in md.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        width = len(re.findall(r"(?<!\\)\|", line)) - 1
        if header is None:
            header = width
        out.append((header, width, line))
    return out


@pytest.mark.parametrize("name", ["prepost", "zoo"])
def test_every_table_row_has_the_header_width(reports, name):
    _, paths = reports[name]
    rows = _table_widths(paths["report.md"].read_text())
    assert len(rows) > 30
    bad = [row for h, w, row in rows if h != w]
    assert bad == []


def test_cells_that_could_break_a_table_or_inject_markup_are_escaped(tmp_path):
    from normlab.report.render import _md, cell

    nasty = ["a|b", "x`y", "*bold*", "<script>alert(1)</script>", "_em_", "back\\slash|", "two\nlines"]
    md = "| h |\n|---|\n" + "\n".join(f"| {cell(t)} |" for t in nasty)
    assert all(h == w for h, w, _ in _table_widths(md))
    html = _md().render(md)
    assert "<script>" not in html and "<em>" not in html and "<strong>" not in html and "<code>" not in html
    for text in ("a|b", "x`y", "*bold*", "_em_", "back\\slash|", "two lines"):
        assert f"<td>{text}</td>" in html, text
    assert cell("rmsnorm-pre_lr1e-3") == "rmsnorm-pre_lr1e-3" and cell("p < 0.05") == "p < 0.05"


def test_setup_table_cells_are_escaped(reports):
    from normlab.report import setup_table
    from normlab.report.runs import load_experiment_runs

    info, runs = load_experiment_runs(reports["prepost"][0])
    info = {**info, "overrides": ["data.source=text:/a|b.txt"]}
    md, _ = setup_table.markdown(info, runs, {"overrides": "x|y", "data": "*names*"})
    assert "| CLI overrides | data.source=text:/a\\|b.txt | x\\|y |" in md and "| \\*names\\* |" in md
    assert all(h == w for h, w, _ in _table_widths(md))


def test_all_zero_nan_counts_are_one_sentence_and_nonzero_ones_a_figure(reports, tmp_path):
    _, paths = reports["prepost"]
    md = paths["report.md"].read_text()
    assert "probe_nan_attention.png" not in paths and "probe_nan_attention.png" not in md
    assert "no non-finite values in any layer, at any probe step" in md
    root = tmp_path / "nan"
    write_probed_experiment(root, "nan", ["a", "b"], range(2))
    metrics = root / "b-seed1" / "metrics.jsonl"
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    last = max(i for i, r in enumerate(lines) if "probe/nan_counts/attn/layer2" in r)
    lines[last]["probe/nan_counts/attn/layer2"] = 3.0
    metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
    (root / "probe_nan_activations.png").write_bytes(b"an earlier build's figure")
    paths = build_report(root)
    assert paths["probe_nan_attention.png"].read_bytes()[:4] == b"\x89PNG"
    assert "Non-finite values in activations, per layer: no non-finite values" in paths["report.md"].read_text()
    assert not (root / "probe_nan_activations.png").exists()


def test_heatmap_text_contrasts_ticks_are_integers_and_the_bar_is_labelled():
    from normlab.report.plots_probes import grid_heatmaps

    grid = np.arange(12, dtype=float).reshape(3, 4)
    fig = grid_heatmaps({"pre": {0: grid, 100: grid + 1}}, "Head-wise attention entropy (nats)", "viridis",
                        labels=["layer0", "layer1", "layer2"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert list(ax.get_xticks()) == [0, 1, 2, 3]
    colors = {t.get_text(): t.get_color() for t in ax.texts}
    assert colors["0.00"] == "white" and colors["11.00"] == "black"   # viridis: dark purple ... light yellow
    bar = fig.axes[-1]
    assert "entropy" in bar.get_ylabel()


def test_legends_sit_outside_the_data():
    from normlab.report.plots import loss_panels

    rng = np.random.default_rng(0)
    curves = {v: 2 + rng.random((3, 50)) for v in ("pre", "post", "none")}
    fig = loss_panels(curves)
    fig.canvas.draw()
    legends = [a.get_legend() for a in fig.axes if a.get_legend()] + list(fig.legends)
    assert legends
    for legend in legends:
        box = legend.get_window_extent()
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent())


def test_many_variants_draw_small_multiples_not_thirty_colours():
    from normlab.report.plots import cumulative_average, loss_panels

    rng = np.random.default_rng(0)
    curves = {f"v{i}": 2 + rng.random((2, 40)) for i in range(30)}
    fig = loss_panels(curves)
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == 30 and all(a.get_title().startswith(f"v{i}") for i, a in enumerate(panels))
    ranked = cumulative_average(curves)
    assert len(ranked.axes[0].get_yticklabels()) == 30


# after load: the page's height and where the outcome line and the claims table end (CSS pixels from the top)
LAYOUT_SCRIPT = ('<script>window.addEventListener("load", () => { const b = document.body; '
                 'const outcome = [...document.querySelectorAll("p strong")].find(x => x.textContent.startsWith('
                 '"Outcome:")); const table = document.querySelector("h2#claims ~ div.table table"); '
                 'b.setAttribute("data-layout", [document.documentElement.scrollHeight, '
                 'outcome ? outcome.getBoundingClientRect().bottom : -1, '
                 'table ? table.getBoundingClientRect().bottom : -1].join(":")); });</script>')


def test_first_screen_holds_the_outcome_and_the_claims_table(reports, tmp_path):
    """Issue 27: the report leads with the answer. At 1400 x 1000 the first screen shows the outcome line and the
    whole claims table; the generic probe groups, samples and runs are collapsed, so the page is short."""
    exp_dir, paths = reports["prepost"]
    html = paths["report.html"].read_text()
    page = paths["report.html"].with_name("report-layout.html")
    page.write_text(html.replace("</body>", LAYOUT_SCRIPT + "</body>"))
    profile = tmp_path / "profile-layout"
    profile.mkdir()
    shot = tmp_path / "first-screen.png"
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", f"--screenshot={shot}",
                          "--window-size=1400,1000", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    height, outcome, table = (float(x) for x in re.search(r'data-layout="([^"]+)"', run.stdout).group(1).split(":"))
    assert 0 < outcome < table <= 1000, (outcome, table)
    assert height < 8000, height          # 16,000-21,000 px before the generic figures were collapsed
    assert re.search(r"Outcome: (\d+ (supported|contradicted|not enough evidence|untestable here)(, )?)+ of 6 "
                     r"claims", html)
    assert "<th>metric (unit)</th>" in html and "mean_train_loss, last 100 (nats/token)" in html
    assert "<th>p raw / Holm-adjusted</th>" in html and " − 0:" not in html
    for collapsed in ("Probe: attn_entropy", "Runs", "Samples (first seed of each variant)"):
        assert re.search(rf"<details><summary><h[23] [^>]*>{re.escape(collapsed)}</h[23]></summary>", html), collapsed
    order = [html.index(x) for x in ('id="claims"', 'id="results-mean-sd-over-seeds"', 'id="setup-vs-the-source"',
                                     'id="probe-figures"')]
    assert order == sorted(order)
    shutil.copy(shot, exp_dir / "screenshot-first-screen.png")


def test_a_smoke_report_says_it_checks_the_plumbing(tmp_path):
    write_probed_experiment(tmp_path / "prepost-smoke", "prepost", list(PREPOST), range(3), level_of=PREPOST.get,
                            seed_ref="003", preset="smoke", overrides=[], description="Three MicroGPTs.")
    html = build_report(tmp_path / "prepost-smoke", load_experiment("prepost"))["report.html"].read_text()
    assert "Smoke run (preset smoke)" in html and "not the science" in html
    assert "This describes the experiment as shipped; these runs differ by preset smoke: train.steps=100" in html
