import json

import numpy as np
import pytest
import torch

import normlab as nl
from normlab.rundir import read_metrics
from normlab.training import lr_at
from normlab.rundir import latest_checkpoint
from normlab.config import TrainConfig


def _losses(run_dir):
    return [m["loss"] for m in read_metrics(run_dir / "metrics.jsonl") if "loss" in m]


def test_short_run_writes_the_run_directory(tiny, tmp_path):
    summary = nl.train(tiny("name=a"))
    run = tmp_path / "a"
    for f in ("config.yaml", "meta.json", "metrics.jsonl", "summary.json", "samples.txt", "tokenizer.json"):
        assert (run / f).exists(), f
    assert summary["status"] == "complete" and summary["steps_done"] == 30
    assert latest_checkpoint(run) is not None
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["torch"] == torch.__version__
    losses = _losses(run)
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5])   # it learns
    assert len((run / "samples.txt").read_text().splitlines()) == 3


def test_same_seed_is_bit_identical_and_other_seed_differs(tiny, tmp_path):
    nl.train(tiny("name=a"))
    nl.train(tiny("name=b"))
    nl.train(tiny("name=c", "train.seed=1"))
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert _losses(tmp_path / "a") != _losses(tmp_path / "c")


def test_resume_equals_an_uninterrupted_run(tiny, tmp_path):
    nl.train(tiny("name=full"))
    cut = nl.train(tiny("name=cut"), until_step=13)
    assert cut["status"] == "interrupted"
    assert len(_losses(tmp_path / "cut")) == 13
    nl.train(tiny("name=cut"), resume=True)
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert resumed["val_loss"] == full["val_loss"]
    assert (tmp_path / "cut" / "samples.txt").read_text() == (tmp_path / "full" / "samples.txt").read_text()


def test_resume_refuses_an_architecture_change(tiny):
    nl.train(tiny("name=r"), until_step=5)
    try:
        nl.train(tiny("name=r", "model.d_model=32"), resume=True)
    except nl.ConfigError as err:
        assert "model.d_model: 16 -> 32" in str(err)
    else:
        raise AssertionError("resume accepted a changed architecture")


def test_existing_run_is_not_overwritten_without_resume(tiny):
    nl.train(tiny("name=keep"), until_step=3)
    try:
        nl.train(tiny("name=keep"))
    except nl.ConfigError as err:
        assert "--resume" in str(err) and "overwrite=True" in str(err)
    else:
        raise AssertionError("an existing run was overwritten")


def test_non_finite_loss_stops_cleanly(tiny, tmp_path, monkeypatch):
    from inject import inject_nan

    cfg = tiny("name=boom", "train.steps=60")
    inject_nan(monkeypatch, cfg, 23, "blocks.0.attn")
    summary = nl.train(cfg)
    assert summary["status"] == "diverged" and summary["diverged_step"] == 23
    assert "non-finite" in summary["diverged_reason"] and summary["steps_done"] == 24
    assert json.loads((tmp_path / "boom" / "summary.json").read_text())["diverged_step"] == 23
    losses = _losses(tmp_path / "boom")
    assert len(losses) == 30 and all(np.isfinite(losses[:23])) and not np.isfinite(losses[23])  # flushed to step 29
    assert latest_checkpoint(tmp_path / "boom") is None   # a diverged state is never checkpointed


def test_loss_bound_stops_the_run(tiny):
    summary = nl.train(tiny("name=bound", "train.loss_bound=1.0"))
    assert summary["status"] == "diverged" and summary["diverged_step"] == 0
    assert "train.loss_bound=1.0" in summary["diverged_reason"]


def test_schedules():
    linear = TrainConfig(steps=100, lr=0.01, schedule="linear")
    assert lr_at(0, linear) == 0.01 and abs(lr_at(50, linear) - 0.005) < 1e-12
    cosine = TrainConfig(steps=110, lr=1.0, schedule="cosine", warmup_steps=10, min_lr_frac=0.1)
    assert lr_at(0, cosine) == 0.1 and lr_at(9, cosine) == 1.0 and lr_at(10, cosine) == 1.0
    assert abs(lr_at(60, cosine) - 0.55) < 1e-9 and abs(lr_at(110, cosine) - 0.1) < 1e-9
    assert lr_at(77, TrainConfig(steps=100, lr=0.3, schedule="constant")) == 0.3
    # past the end the schedule holds its last value: a cosine never rises into a second cycle
    assert lr_at(150, cosine) == pytest.approx(0.1) and lr_at(200, cosine) == pytest.approx(0.1)
    assert lr_at(130, linear) == 0.0


def test_no_weight_decay_on_gains_biases_or_embeddings():
    from normlab.training.optim import param_groups

    cfg = nl.load_config("debug", ["model.vocab_size=11", "model.bias=true"]).model
    model = nl.build_model(cfg)
    decay, no_decay = param_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    for name, p in model.named_parameters():
        should = p.dim() >= 2 and not name.startswith(("wte", "wpe"))
        assert (id(p) in decayed) == should, name


def test_ctrl_c_stops_between_steps_and_resume_matches(tiny, tmp_path):
    import os
    import signal

    nl.train(tiny("name=full"))

    def interrupt_at_step_9(step, total):
        if step == 9:
            os.kill(os.getpid(), signal.SIGINT)

    summary = nl.train(tiny("name=ctrl_c"), progress=interrupt_at_step_9)
    assert summary == {"status": "interrupted", "step": 9}   # 9 steps were complete when Ctrl-C came
    assert json.loads((tmp_path / "ctrl_c" / "meta.json").read_text())["status"] == "interrupted"
    nl.train(tiny("name=ctrl_c"), resume=True)
    assert _losses(tmp_path / "ctrl_c") == _losses(tmp_path / "full")
