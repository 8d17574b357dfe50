"""torchrun with 2 gloo processes on CPU follows the 1-process loss curve at the same global batch.

Tolerance: 1e-4 absolute per logged loss. The math is the same (each rank's loss is weighted by
its share of the global target tokens, gradients are averaged); only the order of float sums
differs (two half-batch sums + all-reduce vs one sum), ~1e-7 relative per step, which 20 steps
of Adam do not grow past 1e-5 on this model.
"""
import os
import subprocess
import sys

import pytest

import normlab as nl
from normlab.rundir import read_metrics

pytestmark = pytest.mark.distributed

# doc batching pads rows with ignored targets, so the two ranks hold different token counts:
# the case where averaging per-rank means would be wrong.
ARGS = ["train.steps=20", "train.batch_size=8", "data.batching=doc", "train.eval_every=10"]
TOL = 1e-4


def _losses(run_dir):
    return [m["loss"] for m in read_metrics(run_dir / "metrics.jsonl") if "loss" in m]


def _torchrun(tmp_path, *overrides, resume=False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "normlab", "train", "debug", f"out_dir={tmp_path}", *ARGS, *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd + (["--resume"] if resume else []), capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one(tmp_path, parallel):
    nl.train(nl.load_config("debug", [f"out_dir={tmp_path}", "name=one", *ARGS]))
    _torchrun(tmp_path, "name=two", f"train.parallel={parallel}", "train.ckpt_every=10")
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 20
    assert max(abs(a - b) for a, b in zip(one, two)) < TOL, (one, two)
    meta = (tmp_path / "two" / "meta.json").read_text()
    assert '"world_size": 2' in meta and (tmp_path / "two" / "samples.txt").exists()
    # ... and its step-10 checkpoint (full weights; optimizer state keyed by name) resumes in 1 process:
    # point `latest` back at it, as if the 2-process run had stopped there
    ckpt = tmp_path / "two" / "checkpoints"
    assert (ckpt / "step_000010" / "state.safetensors").exists()
    (ckpt / "latest").write_text("step_000010\n")
    (tmp_path / "two" / "summary.json").unlink()
    nl.train(nl.load_config("debug", [f"out_dir={tmp_path}", *ARGS, "name=two", f"train.parallel={parallel}"]),
             resume=True)
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 20 and max(abs(a - b) for a, b in zip(one, two)) < TOL


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_compiled_model_under_two_processes_matches_one(tmp_path, parallel):
    """train.compile=model composes with DDP and FSDP2 (compile wraps the sharded/replicated module)."""
    nl.train(nl.load_config("debug", [f"out_dir={tmp_path}", "name=one", *ARGS, "train.compile=model"]))
    _torchrun(tmp_path, "name=two", f"train.parallel={parallel}", "train.compile=model")
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 20 and max(abs(a - b) for a, b in zip(one, two)) < TOL, (one, two)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_resume_on_two_processes_from_a_one_process_checkpoint(tmp_path, parallel):
    nl.train(nl.load_config("debug", [f"out_dir={tmp_path}", "name=full", *ARGS]))
    nl.train(nl.load_config("debug", [f"out_dir={tmp_path}", "name=cut", *ARGS]), until_step=8)
    _torchrun(tmp_path, "name=cut", f"train.parallel={parallel}", resume=True)
    full, cut = _losses(tmp_path / "full"), _losses(tmp_path / "cut")
    assert full[:8] == cut[:8] and len(cut) == 20
    assert max(abs(a - b) for a, b in zip(full, cut)) < TOL


def test_global_batch_must_divide_by_world_size(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "normlab", "train", "debug", f"out_dir={tmp_path}", "train.batch_size=7"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode != 0 and "must be divisible by the world size 2" in out.stderr
