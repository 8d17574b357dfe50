"""The figure cache (report/figcache.py): a re-report of unchanged runs draws nothing and writes the same
figures; changed run data, changed drawing code, a corrupt or stale entry and an unfinished sweep are drawn
again, never trusted."""
import base64
import json

import numpy as np
import pytest

from normlab.experiments import load_experiment
from normlab.report import build_report, figcache

from runfixtures import decaying, write_experiment, write_run


@pytest.fixture
def exp_dir(tmp_path):
    root = tmp_path / "prepost"
    rng = np.random.default_rng(0)
    runs = [write_run(root, v, s, decaying(level, s, n=60, rng=rng, noise=0.02), val=level + 0.1)
            for v, level in {"pre": 2.0, "post": 2.6}.items() for s in range(2)]
    return write_experiment(root, "prepost", ["pre", "post"], runs, [0, 1], seed_ref="003", preset=None,
                            overrides=[])


def _pngs(exp_dir):
    return {p.name: p.read_bytes() for p in exp_dir.glob("*.png")}


def test_a_rereport_of_unchanged_runs_draws_nothing_and_writes_the_same_figures(exp_dir, drawn):
    spec = load_experiment("prepost")
    build_report(exp_dir, spec)
    first = _pngs(exp_dir)
    assert drawn == [sorted(first)] and "loss_curves.png" in first
    build_report(exp_dir, spec)
    assert len(drawn) == 1                          # nothing drawn the second time
    assert _pngs(exp_dir) == first
    entries = list((exp_dir / figcache.FOLDER).glob("*.json"))
    assert entries and all(json.loads(e.read_text())["format"] == figcache.FORMAT for e in entries)   # JSON, no pickle


def test_changed_run_data_or_drawing_code_is_drawn_again(exp_dir, drawn, monkeypatch):
    spec = load_experiment("prepost")
    build_report(exp_dir, spec)
    metrics = exp_dir / "post-seed1" / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    record = json.loads(lines[5])
    record["loss"] += 0.5
    metrics.write_text("".join(lines[:5] + [json.dumps(record) + "\n"] + lines[6:]))
    build_report(exp_dir, spec)
    assert len(drawn) == 2 and "loss_curves.png" in drawn[1]
    monkeypatch.setattr(figcache, "code_key", lambda extra=(): "another version of the drawing code")
    build_report(exp_dir, spec)
    assert len(drawn) == 3


def _corrupt(entry: dict, how: str) -> str:
    fig = next(f for f in entry["figures"].values() if "png" in f)
    if how == "not json":
        return '{"format": 1, "key": '
    if how == "png altered":   # the bytes changed, the recorded hash did not
        png = bytearray(base64.b64decode(fig["png"]))
        png[-20] ^= 0xFF
        fig["png"] = base64.b64encode(bytes(png)).decode()
    elif how == "not base64":
        fig["png"] = "@@@@"
    elif how == "stale key":
        entry["key"] = "0" * 64
    elif how == "field of the wrong type":
        fig["caption"] = 3
    return json.dumps(entry)


@pytest.mark.parametrize("how", ["not json", "png altered", "not base64", "stale key", "field of the wrong type"])
def test_a_corrupt_or_stale_entry_is_drawn_again_and_replaced(exp_dir, drawn, how):
    spec = load_experiment("prepost")
    build_report(exp_dir, spec)
    first = _pngs(exp_dir)
    path = exp_dir / figcache.FOLDER / "loss.json"
    good = json.loads(path.read_text())
    path.write_text(_corrupt(json.loads(path.read_text()), how))
    build_report(exp_dir, spec)
    assert len(drawn) == 2 and "loss_curves.png" in drawn[1]     # the broken job only
    assert _pngs(exp_dir) == first
    assert json.loads(path.read_text()) == good                 # replaced by a whole entry


def test_an_unfinished_sweep_is_not_cached(exp_dir, drawn):
    summary = exp_dir / "pre-seed0" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "running"}))
    spec = load_experiment("prepost")
    build_report(exp_dir, spec)
    build_report(exp_dir, spec)
    assert len(drawn) == 2
    assert not list((exp_dir / figcache.FOLDER).glob("*.json"))


def test_a_rereport_needs_neither_torch_nor_matplotlib_and_a_broken_layout_is_rebuilt(exp_dir, drawn):
    """The layout entry names the figure groups: a re-report reads it and the jobs' entries alone (no probe
    registry, so no torch; no matplotlib); one that does not parse is rebuilt from the jobs' entries, drawing
    nothing."""
    import subprocess
    import sys

    spec = load_experiment("prepost")
    build_report(exp_dir, spec)
    first = _pngs(exp_dir)
    layout = exp_dir / figcache.FOLDER / "layout.json"
    layout.write_text("[")
    build_report(exp_dir, spec)
    assert len(drawn) == 1 and _pngs(exp_dir) == first and json.loads(layout.read_text())["groups"]
    probe = ("import sys; from normlab.experiments.spec import load_experiment; from normlab.report import build_report; "
             f"build_report({str(exp_dir)!r}, load_experiment('prepost')); "
             "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
