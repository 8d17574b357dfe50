"""normlab push / pull: what a run and an experiment put on the Hub, and the way back.

The Hub is not reachable here, so `HfApi.create_repo` / `upload_folder` are replaced by a fake that
files the upload in huggingface_hub's own cache layout; `pull` then runs the real
`snapshot_download` in offline mode against that cache (the loading code is the library's own).
"""
import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import normlab as nl
from normlab.cli import main
from normlab.config import ConfigError
from normlab import publish

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A Hub in a folder: uploads land in a cache that the offline snapshot_download reads."""
    import shutil

    import datasets
    from huggingface_hub import HfApi, constants

    cache = tmp_path / "hub-cache"
    calls = []

    def create_repo(self, repo_id, private=False, exist_ok=False, **kw):
        calls.append(("create_repo", repo_id, private))

    def upload_folder(self, *, folder_path, repo_id, revision=None, commit_message=None, **kw):
        calls.append(("upload_folder", repo_id, commit_message))
        root = cache / f"models--{repo_id.replace('/', '--')}"
        shutil.copytree(folder_path, root / "snapshots" / COMMIT, dirs_exist_ok=True)
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(COMMIT)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return calls


def _tiny_run(tmp_path, name="r"):
    cfg = nl.load_config("debug", [f"out_dir={tmp_path / 'runs'}", f"name={name}", "train.steps=6",
                                   "train.eval_every=6", "sample.n=1"])
    nl.train(cfg)
    return tmp_path / "runs" / name


def test_push_a_run_then_pull_it_back_and_sample(tmp_path, fake_hub):
    run = _tiny_run(tmp_path)
    r = CliRunner().invoke(main, ["push", str(run), "alice/tiny-run", "--private"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert fake_hub[0] == ("create_repo", "alice/tiny-run", True)
    out = tmp_path / "pulled"
    r = CliRunner().invoke(main, ["pull", "alice/tiny-run", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output and "one run (complete)" in r.output
    ckpt = (out / "checkpoints" / "latest").read_text().strip()
    assert not (out / "checkpoints" / ckpt / "state.safetensors").exists()   # no optimizer unless asked
    ours = load_file(run / "checkpoints" / ckpt / "model.safetensors")
    theirs = load_file(out / "checkpoints" / ckpt / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    card = (out / "README.md").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['val_loss']:.4f}" in card and "normlab pull alice/tiny-run" in card
    r = CliRunner().invoke(main, ["sample", str(out), "--n", "2"], catch_exceptions=False)
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 2
    with pytest.raises(ConfigError, match="already exists and is not empty"):   # never over a run on disk
        publish.pull("alice/tiny-run", run)


def test_push_an_experiment_keeps_its_report_and_only_finished_runs(tmp_path, fake_hub):
    exp = tmp_path / "runs" / "exp"
    for name in ("a-seed0", "b-seed0"):
        cfg = nl.load_config("debug", [f"out_dir={exp}", f"name={name}", "train.steps=4", "train.eval_every=4",
                                       "sample.n=1"])
        nl.train(cfg)
    (exp / "experiment.json").write_text(json.dumps({
        "name": "exp", "title": "Two tiny runs", "variants": ["a", "b", "c"], "seeds": [0],
        "runs": [{"variant": v, "seed": 0, "dir": f"{v}-seed0"} for v in ("a", "b", "c")]}))  # c never ran
    publish.push(exp, "bob/exp", with_optimizer=True)
    out = publish.pull("bob/exp", tmp_path / "pulled")
    info = json.loads((out / "experiment.json").read_text())
    assert [r["dir"] for r in info["runs"]] == ["a-seed0", "b-seed0"]
    assert (out / "a-seed0" / "metrics.jsonl").exists() and (out / "b-seed0" / "tokenizer.json").exists()
    ckpt = (out / "a-seed0" / "checkpoints" / "latest").read_text().strip()
    assert (out / "a-seed0" / "checkpoints" / ckpt / "state.safetensors").exists()    # --with-optimizer
    r = CliRunner().invoke(main, ["report", str(out)], catch_exceptions=False)
    assert r.exit_code == 0 and (out / "report.md").exists()
    assert "| a-seed0 |" in (out / "README.md").read_text()


def test_bad_input_is_one_clear_line(tmp_path, fake_hub):
    with pytest.raises(ConfigError, match="not of the form <user or org>/<name>"):
        publish.check_repo_id("no-slash")
    with pytest.raises(ConfigError, match="neither a finished run directory"):
        publish.push(tmp_path, "alice/x")
    r = CliRunner().invoke(main, ["pull", "alice/never-pushed", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "could not pull alice/never-pushed" in r.output and "Traceback" not in r.output
