"""Tiny trained run directories that the safety suites copy and break (built once per test module).

`train_runs(root)`: root/done (complete, 6 steps, checkpoints every 2, probes every 3), root/part
(the same run interrupted at step 3) and root/div (diverged at step 7 with forensics, the NaN injected
at a fixed batch, so it is the same step on every CPU). `run_sweep(root)`: `normlab run` of a
one-variant experiment (TINY_EXPERIMENT) into root/out; returns (its experiment.yaml, root/out).
"""
from pathlib import Path

import pytest
import yaml

import normlab as nl

from inject import inject_nan
from oneline import invoke

COMMON = ["train.steps=6", "train.eval_every=3", "train.eval_batches=1", "sample.n=1", "probes.every=3",
          "train.ckpt_every=2"]
DIVERGE = ["train.steps=12", "probes.every=4", "probes.snapshot_every=2", "train.log_every=2", "train.eval_batches=1",
           "sample.n=1"]
TINY_EXPERIMENT = {
    "name": "tiny", "title": "one tiny variant", "seeds": 1, "jobs": 1,
    "base": {"model": {"d_model": 16, "n_head": 2, "n_layer": 2, "block_size": 16},
             "train": {"steps": 6, "batch_size": 8, "eval_every": 3, "eval_batches": 1, "ckpt_every": 2},
             "sample": {"n": 1}, "probes": {"every": 3}},
    "variants": {"a": {}}}


def resume_args(root: Path, name: str = "part") -> list:
    """The command that continues root/<name> (a copy of part)."""
    return ["train", "debug", f"out_dir={root}", f"name={name}", *COMMON, "--resume"]


def train_runs(root: Path) -> Path:
    nl.train(nl.load_config("debug", [f"out_dir={root}", "name=done", *COMMON]))
    nl.train(nl.load_config("debug", [f"out_dir={root}", "name=part", *COMMON]), until_step=3)
    with pytest.MonkeyPatch.context() as mp:
        cfg = nl.load_config("debug", [f"out_dir={root}", "name=div", *DIVERGE])
        inject_nan(mp, cfg, 7)
        assert nl.train(cfg)["status"] == "diverged"
    assert (root / "div" / "forensics.json").exists() and (root / "part" / "checkpoints" / "step_000003").is_dir()
    return root


def run_sweep(root: Path) -> tuple[Path, Path]:
    spec = root / "tiny" / "experiment.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(yaml.safe_dump(TINY_EXPERIMENT))
    r = invoke("run", spec, "--out", root / "out")
    assert r.exit_code == 0, r.output + r.stderr
    assert (root / "out" / "tiny" / "a-seed0" / "summary.json").exists()
    return spec, root / "out"


def latest(run: Path) -> Path:
    """The checkpoint folder run/checkpoints/latest names."""
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


def make_partial(run: Path) -> None:
    """The run as a kill after its step-4 checkpoint leaves it: no summary, `latest` -> step_000004."""
    (run / "summary.json").unlink()
    (run / "samples.txt").unlink()
    (run / "checkpoints" / "latest").write_text("step_000004\n")
