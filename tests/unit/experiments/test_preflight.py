"""`normlab run` checks what it can before anything trains (issue 27): data sources (once), --replicate (same
experiment, disjoint seeds), and writes no report when every run failed. A refusal is one `error:` line, exit 2,
nothing written."""
import json

import pytest

import normlab.experiments.run as run_mod
from normlab.experiments.run import run_experiment

from oneline import invoke, refused, snapshot


def _results(folder, experiment, seeds):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"experiment": experiment, "seeds": seeds,
                                                     "claims": [{"id": "a", "text": "a claim", "verdict": "supported"}]}))
    return folder


def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the sweep started")
    monkeypatch.setattr(run_mod, "_sweep", fail)


def test_replicate_of_another_experiment_is_refused_before_training(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    other = _results(tmp_path / "normfree-smoke", "normfree", [0, 1])
    out = tmp_path / "out"
    r = invoke("run", "prepost", "--seeds", "5-9", "--replicate", other, "--out", out)
    refused(r, "--replicate", "normfree", "prepost")
    assert not out.exists()


def test_replicate_with_overlapping_seeds_is_refused_before_training(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    original = _results(tmp_path / "prepost", "prepost", [0, 1, 2, 3, 4])
    before = snapshot(tmp_path)
    line = refused(invoke("run", "prepost", "--seeds", "3-7", "--replicate", original, "--out", tmp_path / "out"),
                   "overlap", "--seeds 8-12")
    assert "3, 4" in line
    assert snapshot(tmp_path) == before


def test_offline_hub_source_stops_once_naming_what_works(tmp_path, monkeypatch):
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    try:
        from datasets import config as datasets_config
        monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", True)
    except ImportError:
        pass
    _no_training(monkeypatch)
    opened = []
    import normlab.data.corpora as corpora
    real = corpora.open_source
    monkeypatch.setattr(corpora, "open_source", lambda *a, **k: (opened.append(a[0]), real(*a, **k))[1])
    out = tmp_path / "out"
    r = invoke("run", "sinks", "--seeds", "2", "--out", out, f"data.cache_dir={tmp_path / 'cache'}")
    refused(r, "data.source=wikitext2", "data.source=text:", "--preset smoke")
    assert opened == ["wikitext2"]          # once, not once per run (8 runs)
    assert not out.exists()


def test_missing_text_file_stops_before_anything_is_written(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    out = tmp_path / "out"
    refused(invoke("run", "prepost", "--seeds", "1", "--out", out, f"data.source=text:{tmp_path / 'none.txt'}"),
            "none.txt")
    assert not out.exists()


class _AllFail:
    interrupted = False

    def __init__(self, tasks):
        self.tasks = tasks

    def run(self):
        return {r.cfg.name: {"status": "failed", "error": "OSError: the disk is gone"} for t in self.tasks
                for r in t.runs}


def test_a_sweep_whose_runs_all_failed_writes_no_report(tmp_path, monkeypatch):
    monkeypatch.setattr(run_mod, "_sweep", lambda launcher, tasks, *a, **k: _AllFail(tasks))
    result = run_experiment("prepost", ["train.steps=5"], seeds=2, out=str(tmp_path), echo=lambda line: None)
    assert result.report == {} and not list(tmp_path.rglob("report.*")) and not list(tmp_path.rglob("results.json"))
    r = invoke("run", "prepost", "train.steps=5", "--seeds", "2", "--out", tmp_path)
    line = refused(r, "all 6 runs failed", "no report", "the disk is gone", code=1)
    assert line.count("the disk is gone") == 1


def test_an_override_of_what_a_variant_sets_itself_is_noted(tmp_path, monkeypatch):
    """calibration's makemore reads names; `data.source=...` alone would give it nanoGPT's text: the plan says so
    and how to scope it (the sweep itself is stubbed: only the plan's lines matter here)."""
    monkeypatch.setattr(run_mod, "_sweep", lambda launcher, tasks, *a, **k: _AllFail(tasks))
    lines = []
    run_experiment("calibration", ["data.source=names", "train.steps=700"], seeds=1, out=str(tmp_path),
                   echo=lines.append)
    notes = [line for line in lines if line.startswith("note:")]
    assert notes == ["note: train.steps=700 also replaces the value that variant(s) makemore set themselves; for one "
                     "variant only, write VARIANT:train.steps=700 (e.g. nanogpt:train.steps=700)"]
    lines.clear()
    run_experiment("prepost", ["model.norm.placement=pre", "train.steps=5"], seeds=1, out=str(tmp_path / "b"),
                   echo=lines.append)
    assert [line for line in lines if line.startswith("note:")] == [
        "note: model.norm.placement=pre also replaces the value that variant(s) post, none set themselves; for one "
        "variant only, write VARIANT:model.norm.placement=pre"]
