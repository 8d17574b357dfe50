"""The report's figure sets (report/build.py FIGURE_SETS): the summary draws the experiment's probe_figures in full
and collapses every other probe's per-layer curves into one overview; `all` draws every probe figure. The summary
reads no probes/step_N.npz it does not draw."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from normlab.cli import main
from normlab.config import ConfigError
from normlab.experiments import load_experiment
from normlab.report import build_report
from normlab.report import probe_data
from normlab.report.probe_data import ProbeRun, _layer_mean, collapsed_figures, full_figure, layer_series

from reportfixtures import write_probed_experiment


@pytest.fixture
def probed(tmp_path):
    root = tmp_path / "prepost"
    write_probed_experiment(root, "prepost", ["pre", "post", "none"], range(2), seed_ref="003", preset=None,
                            overrides=[])
    return root


def test_the_layer_mean_is_the_mean_over_layers_of_the_seed_means():
    runs = [ProbeRun(scalars={"p/k/layer0": {0: 1.0, 10: 3.0}, "p/k/layer1": {0: 5.0, 10: 7.0}}),
            ProbeRun(scalars={"p/k/layer0": {0: 3.0, 10: 5.0}, "p/k/layer1": {0: 7.0}})]   # layer1 lacks step 10
    steps, values = _layer_mean(layer_series(runs, "p/k"))
    assert steps.tolist() == [0, 10]
    # step 0: layer0 seeds (1, 3) -> 2, layer1 (5, 7) -> 6: mean 4; step 10: layer0 (3, 5) -> 4, layer1 (7) -> 7: 5.5
    assert np.allclose(values, [4.0, 5.5])
    assert _layer_mean({}) is None


def test_the_summary_draws_named_probes_in_full_and_one_overview_of_the_rest(probed):
    spec = load_experiment("prepost")
    spec.probe_figures = ["attn_entropy"]
    paths = build_report(probed, spec)
    drawn = {p for p in paths if p.startswith("probe_")}
    assert {"probe_entropy_heads.png", "probe_entropy_layers.png", "probe_overview.png"} <= drawn
    assert not drawn & {f.file for _, f in collapsed_figures(("attn_entropy",))}
    md = paths["report.md"].read_text()
    assert "Probes at a glance" in md and "--figures all" in md and "probe_sinks.png" in md   # says what it left out
    html = paths["report.html"].read_text()
    assert "<h3 id=\"probes-at-a-glance\">Probes at a glance</h3>" in html   # open, not in a <details>
    assert full_figure("nan_counts", ()) and not full_figure("attn_sinks", ()) and full_figure("attn_sinks", None)

    everything = build_report(probed, spec, "all")
    files = {p for p in everything if p.startswith("probe_")}
    assert {"probe_sinks.png", "probe_massive_activations.png", "probe_norm_weights.png"} <= files
    assert "probe_overview.png" not in files and not (probed / "probe_overview.png").exists()
    assert len(files) > len(drawn)
    again = build_report(probed, spec)   # back to the summary: the full figures it does not draw are removed
    assert not (probed / "probe_sinks.png").exists() and (probed / "probe_overview.png").exists()
    assert again["probe_overview.png"].read_bytes() == paths["probe_overview.png"].read_bytes()


def test_each_figure_set_is_cached_apart(probed, drawn):
    spec = load_experiment("prepost")
    build_report(probed, spec)
    build_report(probed, spec, "all")
    build_report(probed, spec)
    build_report(probed, spec, "all")
    assert len(drawn) == 2 and "probe_overview.png" in drawn[0] and "probe_sinks.png" in drawn[1]


def test_the_summary_reads_no_npz_it_does_not_draw(probed, monkeypatch):
    monkeypatch.setenv("NORMLAB_REPORT_PROCESSES", "1")   # the reads happen here, where the list is
    reads = []
    real = probe_data.read_npz
    monkeypatch.setattr(probe_data, "read_npz", lambda path: reads.append(path) or real(path))
    build_report(probed, load_experiment("prepost"))   # prepost names no probe: only per-layer scalars are drawn
    assert reads == []
    build_report(probed, load_experiment("prepost"), "all")
    assert reads   # the heatmaps and profiles read them


def test_a_bad_figure_set_or_probe_name_is_one_line(probed, tmp_path):
    r = CliRunner().invoke(main, ["report", str(probed), "--figures", "some"])
    assert r.exit_code == 2 and "'some' is not one of 'summary', 'all'" in r.output
    with pytest.raises(ConfigError, match="allowed: summary, all"):
        build_report(probed, None, "some")
    bad = tmp_path / "mine.yaml"
    bad.write_text(json.dumps({"name": "mine", "variants": {"a": {}}, "probe_figures": ["attn_entropy", "sinkz"]}))
    r = CliRunner().invoke(main, ["run", str(bad), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "probe_figures: 'sinkz' is not a probe; allowed: act_kurtosis" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_probe_figures_are_checked_against_exactly_the_registered_probes():
    """experiments/spec.py checks probe_figures by the probes folder's module names (the registry imports torch):
    that holds only while every registered probe is one module of its own name and no other module there is one."""
    from normlab.experiments.spec import NOT_PROBES, PROBE_DIR
    from normlab.probes import PROBES

    assert sorted(f.stem for f in PROBE_DIR.glob("*.py") if f.stem not in NOT_PROBES) == sorted(PROBES)
