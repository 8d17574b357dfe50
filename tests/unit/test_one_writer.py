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
