"""Issue 30: one writer means one writer; checkpoints cross-checked on resume; every input checked before work.

Each case fails on the code before the fix. Refusals are checked as in test_bad_input.py: exit 2, one
`error:` line naming what was wrong, no traceback, and every file byte-identical afterwards.
"""
import errno
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml

from normlab.rundir import RunLock

from oneline import changed, invoke, refused, snapshot
from tinyruns import TINY_EXPERIMENT, resume_args

pytestmark = pytest.mark.usefixtures("in_tmp")


@pytest.fixture(autouse=True)
def _keep_threads():
    """runner.train_task sets torch's thread count for its process; give the next case the count it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _part(runs: Path, tmp_path: Path) -> Path:
    """A copy of the run interrupted at step 3 (checkpoints step_000002, step_000003; latest -> step_000003)."""
    shutil.copytree(runs / "part", tmp_path / "part")
    return tmp_path / "part"


def _ckpt(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _edit_tensors(path: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def _drop_param(run: Path, name: str = "wpe.weight") -> None:
    ck = _ckpt(run)
    info = json.loads((ck / "state.json").read_text())
    info["optimizer_params"].remove(name)
    (ck / "state.json").write_text(json.dumps(info))
    _edit_tensors(ck / "state.safetensors", lambda t: [t.pop(k) for k in list(t) if k.split("/")[1] == name])


def _to_step_100(run: Path) -> None:
    ck = _ckpt(run)
    _edit_json(ck / "state.json", step=100)
    ck.rename(ck.parent / "step_000100")
    (run / "checkpoints" / "latest").write_text("step_000100\n")


def _checkpoints_a_file(run: Path) -> None:
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("not a folder\n")


def _first(tensors: dict, field: str) -> str:
    return next(k for k in tensors if k.endswith("/" + field))


RESUME_EDITS = {
    # finding 2
    "checkpoints-a-file": (_checkpoints_a_file, ["checkpoints", "not a directory"]),
    # finding 5
    "step-true": (lambda r: _edit_json(_ckpt(r) / "state.json", step=True), ["state.json", "`step`"]),
    "step-not-the-folders": (lambda r: _edit_json(_ckpt(r) / "state.json", step=2), ["step_000003"]),
    "step-past-train-steps": (_to_step_100, ["train.steps"]),
    "metrics-lines-cut": (lambda r: _edit_json(_ckpt(r) / "state.json", metrics_lines=3), ["metrics.jsonl", "step 3"]),
    "timing-lines-a-string": (lambda r: _edit_json(_ckpt(r) / "state.json", timing_lines="x"), ["timing_lines"]),
    "fp16-weights": (lambda r: _edit_tensors(_ckpt(r) / "model.safetensors",
                                             lambda t: t.update({k: v.half() for k, v in t.items()})),
                     ["model.safetensors", "F16"]),
    "param-missing-from-both": (_drop_param, ["no optimizer state", "wpe.weight"]),
    "nan-weight": (lambda r: _edit_tensors(_ckpt(r) / "model.safetensors",
                                           lambda t: t["wte.weight"].__setitem__((0, 0), float("nan"))),
                   ["model.safetensors", "non-finite"]),
    "nan-moment": (lambda r: _edit_tensors(_ckpt(r) / "state.safetensors",
                                           lambda t: t[_first(t, "exp_avg_sq")].view(-1).__setitem__(0, float("inf"))),
                   ["state.safetensors", "non-finite"]),
    "negative-adam-step": (lambda r: _edit_tensors(_ckpt(r) / "state.safetensors",
                                                   lambda t: t[_first(t, "step")].fill_(-3)),
                           ["state.safetensors", "negative"]),
    # finding 6
    "rng-wrong-size": (lambda r: _edit_tensors(_ckpt(r) / "state.safetensors",
                                               lambda t: t.update({"rng/torch": torch.zeros(7, dtype=torch.uint8)})),
                       ["rng/torch"]),
}


@pytest.mark.parametrize("edit", RESUME_EDITS)
def test_a_damaged_checkpoint_is_named_and_nothing_is_rewritten(edit, runs, tmp_path):
    run = _part(runs, tmp_path)
    damage, names = RESUME_EDITS[edit]
    damage(run)
    before = snapshot(tmp_path)
    refused(invoke(*resume_args(tmp_path)), *names)
    assert changed(before, snapshot(tmp_path)) == []


def test_a_resume_without_config_yaml_is_refused_not_compared_against_nothing(runs, tmp_path):
    run = _part(runs, tmp_path)
    (run / "config.yaml").unlink()
    before = snapshot(tmp_path)
    refused(invoke(*resume_args(tmp_path), "train.lr=0.5"), "config.yaml", "cannot resume")
    assert changed(before, snapshot(tmp_path)) == []


def test_an_intact_checkpoint_still_resumes(runs, tmp_path):
    _part(runs, tmp_path)
    r = invoke(*resume_args(tmp_path))
    assert r.exit_code == 0, r.output + r.stderr
    assert (tmp_path / "part" / "metrics.jsonl").read_bytes() == (runs / "done" / "metrics.jsonl").read_bytes()


# ---------------------------------------------------------------- 1. the lock is the only door

def _payload(run: Path) -> tuple[dict, str]:
    import dataclasses

    import normlab as nl
    from tinyruns import COMMON

    cfg = nl.load_config("debug", [f"out_dir={run.parent}", f"name={run.name}", *COMMON])
    return dataclasses.asdict(cfg), str(run)


@pytest.mark.parametrize("stacked", [False, True], ids=["alone", "stacked"])
def test_a_run_whose_lock_is_refused_gets_nothing_written(stacked, runs, tmp_path):
    """A stand-in first writer holds the lock of a run it just finished; the refused sweep task writes no failed
    summary.json there (nor into the other member of its stack)."""
    from normlab.experiments import runner

    held = tmp_path / "done"
    shutil.copytree(runs / "done", held)
    payload = [_payload(held)]
    if stacked:
        shutil.copytree(runs / "done", tmp_path / "other")
        (tmp_path / "other" / "summary.json").unlink()   # unfinished: the stack would train it
        payload.append(_payload(tmp_path / "other"))
    before = snapshot(tmp_path)
    seen = []
    with RunLock(held):
        results = runner.train_task(payload, 1, on_done=lambda name, s: seen.append(name))
    assert results["done"]["status"] == "failed" and "another normlab process" in results["done"]["error"]
    assert sorted(seen) == sorted(results)
    assert changed(before, snapshot(tmp_path)) == []


def test_two_runs_on_one_out_do_not_overwrite_each_other(sweep, tmp_path):
    """The first `normlab run` holds the experiment folder (a stand-in holds its lock): the second is refused in one
    line before it writes experiment.json, a summary or a report."""
    spec, out = sweep
    shutil.copytree(out, tmp_path / "out")
    before = snapshot(tmp_path)
    with RunLock(tmp_path / "out" / "tiny"):
        r = invoke("run", spec, "--out", tmp_path / "out")
    refused(r, "another normlab process", "tiny")
    assert changed(before, snapshot(tmp_path)) == []


# ---------------------------------------------------------------- 3, 6, 8: experiment files and arguments

def _experiment(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**TINY_EXPERIMENT, **changes}))
    return path


EXPERIMENT_EDITS = {
    "shipped-name": ({"name": "prepost"}, ["prepost", "shipped"]),
    "grid-of-numbers": ({"grid": [5]}, ["grid"]),
    "group-a-number": ({"groups": {"g": 5}}, ["groups"]),
    "variant-sets-seed": ({"variants": {"a": {"train.seed": 3}}}, ["train.seed", "--seeds"]),
    "grid-value-sets-seed": ({"grid": [{"x": {"train.seed": 3}}]}, ["train.seed"]),
    "a-million-runs": ({"seeds": 1000, "grid": [{f"v{i}": {"train.lr": 0.001} for i in range(1000)}]},
                       ["1001000 runs", "10000"]),
}


@pytest.mark.parametrize("edit", EXPERIMENT_EDITS)
def test_an_experiment_file_is_checked_when_it_loads(edit, tmp_path):
    changes, names = EXPERIMENT_EDITS[edit]
    path = _experiment(tmp_path, **changes)
    t0 = time.perf_counter()
    r = invoke("run", path, "--out", tmp_path / "out")
    assert time.perf_counter() - t0 < 5   # load and refuse; nothing planned, nothing trained
    refused(r, *names)
    assert not (tmp_path / "out").exists()


def test_the_run_cap_is_checked_before_the_grid_is_built(tmp_path):
    from normlab.config import ConfigError
    from normlab.experiments import load_experiment

    path = _experiment(tmp_path, grid=[{f"v{i}": {} for i in range(1000)}, {f"w{i}": {} for i in range(1000)}])
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="1000001 variants"):
        load_experiment(str(path))
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("content", ["not json", '{"seeds": "x", "claims": []}', '{"seeds": [9], "claims": [5]}'],
                         ids=["garbage", "seeds-a-string", "claims-not-claims"])
def test_a_damaged_replicate_folder_is_refused_before_training(content, tmp_path):
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "results.json").write_text(content)
    r = invoke("run", _experiment(tmp_path), "--out", tmp_path / "out", "--replicate", tmp_path / "orig")
    refused(r, "results.json")
    assert not (tmp_path / "out").exists()


CLI_CASES = {
    "bpe-with-seq2seq": (["train", "debug", "data.tokenizer=bpe", "data.task=reverse", "model.encoder_layers=2",
                          "model.pos=rope"], ["data.tokenizer=bpe", "data.task=reverse"]),
    "float-tag-not-a-float": (["train", "debug", "train.lr=!!float abc"], ["train.lr", "not a valid value"]),
    "seeds-5000-digits": (["run", "prepost", "--seeds", "9" * 5000], ["--seeds"]),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_internal_errors_are_one_line(case, tmp_path):
    args, names = CLI_CASES[case]
    refused(invoke(*args), *names)
    assert list(tmp_path.iterdir()) == []


def test_sample_refuses_a_tokenizer_smaller_than_the_model(runs, tmp_path):
    shutil.copytree(runs / "done", tmp_path / "done")
    path = tmp_path / "done" / "tokenizer.json"
    data = json.loads(path.read_text())
    data["chars"] = data["chars"][:5]
    path.write_text(json.dumps(data))
    refused(invoke("sample", tmp_path / "done"), "tokenizer.json", "model.vocab_size")


# ---------------------------------------------------------------- 4. push stays inside its folder

def test_push_does_not_follow_a_run_dir_out_of_the_experiment(runs, tmp_path):
    from normlab.config import ConfigError
    from normlab.publish import stage

    shutil.copytree(runs / "done", tmp_path / "gold")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "experiment.json").write_text(json.dumps({"name": "x", "runs": [{"variant": "a", "seed": 0,
                                                                             "dir": "../gold"}]}))
    (tmp_path / "stage").mkdir()
    with pytest.raises(ConfigError, match="points outside"):
        stage(exp, tmp_path / "stage")
    assert list((tmp_path / "stage").rglob("*.safetensors")) == []


# ---------------------------------------------------------------- 7. out of space

class _Full:
    """A file whose write fills the disk half-way through (a torn line), as ENOSPC leaves it."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, text):
        self.f.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


def _fill_disk_at(monkeypatch, nth: int) -> None:
    """The nth append to a metrics.jsonl (and every later one) fails with ENOSPC."""
    import builtins

    from normlab.rundir import metrics

    count = {"n": 0}

    def fake_open(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            count["n"] += 1
            return _Full(f) if count["n"] >= nth else f
        return f
    monkeypatch.setattr(metrics, "open", fake_open, raising=False)


def _one_error(r, *names) -> str:
    """A run that stopped mid-training: its progress lines, then exactly one `error:` line naming `names`."""
    everything = r.output + r.stderr
    assert "Traceback" not in everything and r.exit_code == 2, everything
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "internal error" not in errors[0], r.stderr
    for name in names:
        assert name in errors[0], f"{name!r} not named in: {errors[0]}"
    return errors[0]


def _uninterrupted(root: Path) -> Path:
    """The same run trained in one go in this process (same threads: CPU reductions split by thread count)."""
    r = invoke(*_train_args(root / "ref"))
    assert r.exit_code == 0, r.output + r.stderr
    return root / "ref" / "part"


def _train_args(root: Path) -> list:
    from tinyruns import COMMON

    return ["train", "debug", f"out_dir={root}", "name=part", *COMMON]


def test_a_full_disk_at_a_metrics_write_is_one_line_and_resume_is_bitwise(runs, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _fill_disk_at(m, 3)
        line = _one_error(invoke(*_train_args(tmp_path)), "metrics.jsonl", "no space left on device",
                       "keeps its checkpoint at step", "--resume")
    r = invoke(*resume_args(tmp_path))
    assert r.exit_code == 0, r.output + r.stderr + line
    reference = _uninterrupted(tmp_path)
    for rel in ("metrics.jsonl", "checkpoints/step_000006/model.safetensors",
                "checkpoints/step_000006/state.safetensors"):
        assert (tmp_path / "part" / rel).read_bytes() == (reference / rel).read_bytes(), rel


def test_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_no_partial_folder(runs, tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    real, calls = safetensors.torch.save_file, {"n": 0}

    def save_file(tensors, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:   # save_model calls it too: the weights, then the state of step 2, then of step 4
            real(tensors, path, *args, **kwargs)   # the bytes went nowhere: what safetensors says then
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                                  "\"No space left on device\" })")
        return real(tensors, path, *args, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(safetensors.torch, "save_file", save_file)
        _one_error(invoke(*_train_args(tmp_path)), ".tmp_step_000004", "no space left on device", "step 2")
    assert not list((tmp_path / "part" / "checkpoints").glob(".tmp_*"))
    r = invoke(*resume_args(tmp_path))
    assert r.exit_code == 0, r.output + r.stderr
    reference = _uninterrupted(tmp_path)
    assert (tmp_path / "part" / "metrics.jsonl").read_bytes() == (reference / "metrics.jsonl").read_bytes()


@pytest.mark.parametrize("n_runs", [1, 2], ids=["alone", "stacked"])
def test_a_sweep_worker_on_a_full_disk_reports_every_run_without_a_traceback(n_runs, runs, tmp_path, monkeypatch,
                                                                             capfd):
    """The body every worker runs: a disk so full that not even the failed summary.json fits still ends each run
    with its one error, sent to the parent (which prints its line), and raises nothing."""
    from normlab.experiments import runner
    from normlab.rundir import files

    _fill_disk_at(monkeypatch, 1)
    real = files.atomic_write_bytes

    def full(path, data):
        if Path(path).name in ("summary.json", "samples.txt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)
    monkeypatch.setattr(files, "atomic_write_bytes", full)
    payload = [_payload(tmp_path / f"r{i}") for i in range(n_runs)]
    seen = {}
    results = runner.train_task(payload, 1, on_done=lambda name, s: seen.update({name: s}))
    assert sorted(seen) == sorted(results) == [f"r{i}" for i in range(n_runs)]
    for s in results.values():
        assert s["status"] == "failed" and "no space left on device" in s["error"], s["error"]
    assert "Traceback" not in capfd.readouterr().err
