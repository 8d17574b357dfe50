"""Speed paths compute the same thing: fused RMSNorm kernel, fused Adam, bf16 autocast, compile,
and the rank slicing of the global batch (no process group needed for the slicing itself)."""
import pytest
import torch

import normlab as nl
from normlab.config import NormConfig
from normlab.data import build_corpus
from normlab.norms import build_norm
from normlab.rundir import read_metrics
from normlab.training.accel import optimizer_flags
from normlab.training.dist import DistInfo, local_batch, unwrap


SHORT = ["train.steps=10", "train.eval_every=10", "sample.n=1"]


def _losses(run_dir):
    return [m["loss"] for m in read_metrics(run_dir / "metrics.jsonl") if "loss" in m]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_fast_path_matches_formula(dtype):
    norm = build_norm(NormConfig(kind="rmsnorm", eps=1e-6), 8)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8))
    x = torch.randn(2, 3, 8).to(dtype)
    x64, g64 = x.double(), norm.weight.double()
    expected = g64 * x64 / torch.sqrt((x64 ** 2).mean(-1, keepdim=True) + 1e-6)
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(norm(x).double(), expected, atol=tol, rtol=tol)


def test_rmsnorm_fast_path_gradient_matches_formula():
    norm = build_norm(NormConfig(kind="rmsnorm", eps=1e-6), 8)
    x = torch.randn(2, 3, 8, requires_grad=True)
    norm(x).pow(3).sum().backward()
    x64 = x.detach().double().requires_grad_()
    (x64 / torch.sqrt((x64 ** 2).mean(-1, keepdim=True) + 1e-6)).pow(3).sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-5, rtol=1e-5)


def test_optimizer_flags_choose_the_implementation():
    cfg = nl.load_config("debug").train
    adamw = torch.optim.AdamW
    assert optimizer_flags(cfg, torch.device("cpu"), adamw) == {"fused": True}  # auto, CPU has fused Adam
    cfg.fused_optimizer = "foreach"
    assert optimizer_flags(cfg, torch.device("cpu"), adamw) == {"foreach": True}
    cfg.fused_optimizer = "forloop"
    assert optimizer_flags(cfg, torch.device("cpu"), adamw) == {"foreach": False}


def test_fused_and_forloop_adam_follow_the_same_curve(tiny, tmp_path):
    nl.train(tiny("name=fused", *SHORT, "train.fused_optimizer=fused"))
    nl.train(tiny("name=loop", *SHORT, "train.fused_optimizer=forloop"))
    a, b = _losses(tmp_path / "fused"), _losses(tmp_path / "loop")
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4


def test_bf16_autocast_trains_close_to_float32(tiny, tmp_path):
    summary = nl.train(tiny("name=bf16", *SHORT, "train.dtype=bfloat16"))
    nl.train(tiny("name=fp32", *SHORT))
    bf16, fp32 = _losses(tmp_path / "bf16"), _losses(tmp_path / "fp32")
    assert summary["status"] == "complete" and bf16 != fp32      # it really ran in bf16
    assert max(abs(x - y) for x, y in zip(bf16, fp32)) < 0.1     # bf16 keeps 8 bits of mantissa


def test_config_values_survive_yaml_parsing():
    cfg = nl.load_config("debug", ["train.compile=none", "train.fused_optimizer=forloop", "train.parallel=fsdp"])
    assert (cfg.train.compile, cfg.train.fused_optimizer, cfg.train.parallel) == ("none", "forloop", "fsdp")
    with pytest.raises(nl.ConfigError, match="choose one of: none, norms, model"):
        nl.load_config("debug", ["train.compile=full"])


def test_rank_slices_partition_the_global_batch():
    cfg = nl.load_config("debug", ["data.batching=doc"])
    data = build_corpus(cfg.data, cfg.model.block_size).train
    whole = data.batch(8, seed=3, step=5)
    parts = [local_batch(data, 8, 3, 5, DistInfo(rank=r, world=2)) for r in range(2)]
    assert torch.equal(torch.cat([p.x for p in parts]), whole.x)
    assert torch.equal(torch.cat([p.y for p in parts]), whole.y)
    assert torch.equal(local_batch(data, 8, 3, 5, DistInfo()).x, whole.x)


def test_unwrap_finds_the_plain_module():
    model = torch.nn.Linear(2, 2)
    assert unwrap(model) is model
    assert unwrap(torch.compile(model)) is model


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["norms", "model"])
def test_compiled_training_follows_the_eager_curve(tiny, tmp_path, mode):
    nl.train(tiny("name=eager", "train.steps=10"))
    nl.train(tiny(f"name={mode}", "train.steps=10", f"train.compile={mode}",
                  f"train.compile_cache={tmp_path / 'cache'}"))
    a, b = _losses(tmp_path / "eager"), _losses(tmp_path / mode)
    assert len(a) == len(b) == 10 and max(abs(x - y) for x, y in zip(a, b)) < 1e-4


@pytest.mark.parametrize("setting,calls", [("retain", 1), ("default", 0)])
def test_cpu_malloc_setting_decides_whether_freed_memory_is_retained(tmp_path, monkeypatch, setting, calls):
    from normlab.training import accel

    seen = []
    monkeypatch.setattr(accel, "retain_freed_memory", lambda: seen.append(1) or True)
    cfg = nl.load_config("debug", SHORT + [f"out_dir={tmp_path}", f"train.cpu_malloc={setting}"])
    nl.train(cfg)
    assert len(seen) == calls


def test_retain_freed_memory_sets_glibc_options_once():
    import sys

    from normlab.training import accel

    if not sys.platform.startswith("linux"):
        assert accel.retain_freed_memory() is False
        return
    assert accel.retain_freed_memory() is True and accel.retain_freed_memory() is True
