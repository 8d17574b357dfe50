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
    """The bf16 path's numerics on any CPU (forced where it has no AMX): within 0.1 nats of float32 at every one
    of 10 steps (bf16 keeps 8 bits of mantissa), the precision in meta.json; plain and stacked alike."""
    import json

    from normlab.training.stacked_loop import train_stacked

    bf16_on = ["train.dtype=bfloat16", "train.cpu_bf16=force"]
    summary = nl.train(tiny("name=bf16", *SHORT, *bf16_on))
    nl.train(tiny("name=fp32", *SHORT))
    bf16, fp32 = _losses(tmp_path / "bf16"), _losses(tmp_path / "fp32")
    assert summary["status"] == "complete" and bf16 != fp32      # it really ran in bf16
    assert max(abs(x - y) for x, y in zip(bf16, fp32)) < 0.1     # bf16 keeps 8 bits of mantissa
    meta = json.loads((tmp_path / "bf16" / "meta.json").read_text())["precision"]
    assert meta["dtype"] == "bfloat16" and meta["cpu_bf16"] in ("amx", "forced without AMX")
    cfgs = [tiny(f"name=s{k}", *SHORT, *bf16_on, f"train.seed={k}") for k in range(2)]
    train_stacked(cfgs, [tmp_path / c.name for c in cfgs])
    assert max(abs(x - y) for x, y in zip(_losses(tmp_path / "s0"), fp32)) < 0.1   # seed 0 is fp32's seed


def test_bf16_on_a_cpu_without_amx_is_refused_in_one_line(tiny, tmp_path, monkeypatch):
    from normlab.training import accel

    monkeypatch.setattr(accel, "cpu_has_amx_bf16", lambda: False)
    with pytest.raises(nl.ConfigError, match="no AMX-BF16.*train.cpu_bf16=force"):
        nl.train(tiny("name=refused", *SHORT, "train.dtype=bfloat16"))
    assert not (tmp_path / "refused" / "metrics.jsonl").exists()
    monkeypatch.setattr(accel, "cpu_has_amx_bf16", lambda: True)
    info = accel.precision(torch.device("cpu"), tiny("train.dtype=bfloat16").train)
    assert info["cpu_amx_bf16"] is True and info["cpu_bf16"] == "amx"


def test_config_values_survive_yaml_parsing():
    cfg = nl.load_config("debug", ["train.compile=none", "train.fused_optimizer=forloop", "train.parallel=fsdp"])
    assert (cfg.train.compile, cfg.train.fused_optimizer, cfg.train.parallel) == ("none", "forloop", "fsdp")
    with pytest.raises(nl.ConfigError, match="choose one of: auto, none, norms, model"):
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


def test_auto_compiles_only_past_the_measured_break_even(monkeypatch):
    from normlab.training import accel

    cpu = torch.device("cpu")
    monkeypatch.setattr(accel, "compile_costs", lambda: {"break_even_member_steps": 5000})
    t = nl.load_config("debug", ["train.steps=1000"]).train
    assert t.compile == "auto"   # the default
    assert accel.compile_choice(t, cpu, members=4)[0] == "none"
    mode, why = accel.compile_choice(t, cpu, members=5)
    assert mode == "model" and "1000 steps x 5 member(s) = 5000 >= break-even 5000" in why
    assert accel.compile_choice(t, torch.device("cuda"), members=50)[0] == "none"     # unmeasured there
    monkeypatch.setattr(accel, "compile_costs", lambda: {})
    assert accel.compile_choice(t, cpu, members=50)[0] == "none"                        # no measurement: eager
    model = torch.nn.Linear(2, 2)
    assert accel.accelerate(model, t, members=50) is model and accel.compile_choice(
        nl.load_config("debug", ["train.compile=model"]).train, cpu) == ("model", "asked")


def test_auto_follows_the_measured_row_nearest_the_run(monkeypatch):
    """Rows carry their size: the nearest one (log size, log stack size) decides; where compiling was slower there,
    eager at any length. Without a size, the file's one break-even."""
    from normlab.training import accel

    rows = [{"shape": "small", "members": 5, "member_gflop": 0.01, "speedup": 1.8, "break_even_member_steps": 3000},
            {"shape": "small", "members": 25, "member_gflop": 0.01, "speedup": 1.3, "break_even_member_steps": 90000},
            {"shape": "wide", "members": 5, "member_gflop": 1.0, "speedup": 0.9, "break_even_member_steps": None}]
    monkeypatch.setattr(accel, "compile_costs", lambda: {"break_even_member_steps": 90000, "measured": {"rows": rows}})
    cpu = torch.device("cpu")
    t = nl.load_config("debug", ["train.steps=1000"]).train
    mode, why = accel.compile_choice(t, cpu, members=4, gflop=0.012)
    assert mode == "model" and "4000 >= break-even 3000 at the nearest measured shape, small x5" in why
    assert accel.compile_choice(t, cpu, members=2, gflop=0.012)[0] == "none"              # 2000 < 3000
    assert accel.compile_choice(t, cpu, members=20, gflop=0.012)[0] == "none"             # small x25: 20000 < 90000
    mode, why = accel.compile_choice(nl.load_config("debug", ["train.steps=10000000"]).train, cpu, 5, gflop=0.5)
    assert mode == "none" and "compiling was slower at the nearest measured shape, wide x5: 0.90x" in why
    assert accel.compile_choice(t, cpu, members=4)[0] == "none"                             # no size: 4000 < 90000
    for r in rows:
        r.pop("member_gflop")
    assert accel.compile_choice(t, cpu, members=4, gflop=0.012)[0] == "none"               # unsized rows: the same


def test_member_gflop_is_six_n_times_the_tokens():
    from normlab.training import accel

    cfg = nl.load_config("debug", ["model.vocab_size=40"])
    model = nl.build_model(cfg.model)
    n = sum(p.numel() for p in model.parameters())
    want = 6 * n * cfg.train.batch_size * cfg.model.block_size / 1e9
    assert accel.member_gflop(model, 1, cfg.train.batch_size) == pytest.approx(want)
    assert accel.member_gflop(model, 4, cfg.train.batch_size) == pytest.approx(want / 4)


def test_the_shipped_break_even_file_reads():
    import json

    from normlab.training import accel

    machines = json.loads(accel.COSTS.read_text())["machines"]
    assert machines and len({m["cpu"] for m in machines}) == len(machines)      # one entry per CPU model
    for m in machines:
        costs = accel.compile_costs(m["cpu"])
        assert costs["break_even_member_steps"] > 0 and costs["measured"]["machine"].startswith(m["cpu"])
        assert all(r["member_gflop"] > 0 for r in costs["measured"]["rows"])   # auto matches runs to rows by size
    assert accel.compile_costs()["measured"]["rows"]                           # this CPU: its own or the cautious


def test_each_cpu_model_has_its_own_break_even_and_an_unmeasured_one_the_most_cautious(tmp_path, monkeypatch):
    import json

    from normlab.training import accel

    def row(shape, be):
        return {"shape": shape, "members": 5, "member_gflop": 0.01 if shape == "small" else 1.0,
                "speedup": 1.5 if be else 0.9, "break_even_member_steps": be}
    costs = tmp_path / "compile_costs.json"
    costs.write_text(json.dumps({"rule": "", "machines": [
        {"cpu": "CPU A", "break_even_member_steps": 3000, "measured": {"machine": "CPU A, ...",
                                                                       "rows": [row("small", 3000), row("wide", 800)]}},
        {"cpu": "CPU B", "break_even_member_steps": 9000, "measured": {"machine": "CPU B, ...",
                                                                       "rows": [row("small", 9000), row("wide", None)]}}]}))
    monkeypatch.setattr(accel, "COSTS", costs)
    assert accel.compile_costs("CPU A")["break_even_member_steps"] == 3000
    cautious = accel.compile_costs("CPU C")
    assert cautious["break_even_member_steps"] == 9000 and "CPU C unmeasured" in cautious["cpu"]
    assert {r["shape"]: r["break_even_member_steps"] for r in cautious["measured"]["rows"]} == {"small": 9000,
                                                                                             "wide": None}
    t = nl.load_config("debug", ["train.steps=1000"]).train
    cpu = torch.device("cpu")
    for name, want in (("CPU A", "model"), ("CPU B", "none"), ("CPU C", "none")):
        monkeypatch.setattr(accel, "cpu_name", lambda name=name: name)
        mode, why = accel.compile_choice(t, cpu, members=4, gflop=0.01)   # 4000 member-steps at "small"
        assert mode == want and name in why
    monkeypatch.setattr(accel, "cpu_name", lambda: "CPU A")
    assert accel.compile_choice(nl.load_config("debug", ["train.steps=100000"]).train, cpu, 5, gflop=1.0)[0] == "model"
    monkeypatch.setattr(accel, "cpu_name", lambda: "CPU C")                     # wide never paid on B: eager
    assert accel.compile_choice(nl.load_config("debug", ["train.steps=100000"]).train, cpu, 5, gflop=1.0)[0] == "none"
    costs.write_text("{not json")
    assert accel.compile_costs() == {}


def test_auto_trains_eagerly_where_compiling_fails():
    from normlab.training.accel import _EagerOnFailure

    model = torch.nn.Linear(3, 2)

    def broken(x):
        raise RuntimeError("inductor: no kernel for this op")
    view = _EagerOnFailure(model, broken)
    x = torch.randn(4, 3)
    assert torch.equal(view(x), model(x)) and view.failed.startswith("RuntimeError: inductor")


@pytest.mark.slow
def test_auto_past_the_break_even_follows_the_eager_curve(tiny, tmp_path, monkeypatch):
    """The tolerance stated for eager (test_compiled_training_follows_the_eager_curve): 1e-4 nats a step."""
    from normlab.training import accel

    monkeypatch.setattr(accel, "compile_costs", lambda: {"break_even_member_steps": 1})
    nl.train(tiny("name=eager", "train.steps=10", "train.compile=none"))
    summary = nl.train(tiny("name=auto", "train.steps=10", f"train.compile_cache={tmp_path / 'cache'}"))
    assert summary["compile"]["used"] == "model"
    a, b = _losses(tmp_path / "eager"), _losses(tmp_path / "auto")
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
