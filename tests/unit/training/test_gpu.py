"""The CUDA path (run with `pytest -m gpu` on a machine with a GPU; deselected by default).

bf16 autocast against fp32, torch.compile against eager, determinism where torch allows it, and a
stacked member against a stack of one on the device. A GPU session runs these before any benchmark.
"""
import os

import numpy as np
import pytest
import torch

import normlab as nl
from normlab.rundir import read_metrics

pytestmark = pytest.mark.gpu

ARGS = ["train.device=cuda", "train.steps=30", "train.eval_every=15", "train.eval_batches=2", "probes.every=15"]


def _losses(run):
    return np.array([m["loss"] for m in read_metrics(run / "metrics.jsonl") if "loss" in m])


def _train(tmp_path, name, *extra):
    assert torch.cuda.is_available(), "the gpu tests need a CUDA device"
    nl.train(nl.load_config("debug", [f"out_dir={tmp_path}", f"name={name}", *ARGS, *extra]))
    return _losses(tmp_path / name)


def test_bf16_autocast_tracks_fp32(tmp_path):
    fp32, bf16 = _train(tmp_path, "fp32"), _train(tmp_path, "bf16", "train.dtype=bfloat16")
    assert np.abs(fp32[:5] - bf16[:5]).max() < 2e-2          # bf16 has 8 bits of mantissa
    assert abs(fp32[-10:].mean() - bf16[-10:].mean()) < 5e-2


def test_compile_matches_eager(tmp_path):
    eager, compiled = _train(tmp_path, "eager"), _train(tmp_path, "compiled", "train.compile=model")
    assert np.abs(eager - compiled).max() < 1e-3


def test_cuda_runs_are_deterministic_where_torch_allows(tmp_path):
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        a, b = _train(tmp_path, "a"), _train(tmp_path, "b")
    finally:
        torch.use_deterministic_algorithms(False)
    assert np.array_equal(a, b)


def test_stacked_member_equals_a_stack_of_one_on_cuda(tmp_path):
    from normlab.training.stacked_loop import train_stacked

    def cfg(name, seed):
        return nl.load_config("prepost", [f"out_dir={tmp_path}", f"name={name}", f"train.seed={seed}",
                                          "train.device=cuda", "train.steps=50", "train.eval_every=25"])
    train_stacked([cfg(f"m{s}", s) for s in range(3)], [tmp_path / f"m{s}" for s in range(3)])
    train_stacked([cfg("one", 1)], [tmp_path / "one"])
    assert np.abs(_losses(tmp_path / "m1") - _losses(tmp_path / "one")).max() < 1e-5
