"""The benchmark scripts still run (smoke, no timing asserted): an earlier merge broke them silently."""
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(*args, timeout=240):
    out = subprocess.run([sys.executable, *args], cwd=BENCH, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def test_train_throughput_prints_its_table():
    out = _run("train_throughput.py", "--shapes", "seed003", "--kinds", "rmsnorm", "dyt", "--placements", "pre",
               "--compile", "--steps", "2", "--rounds", "1")
    assert "| reference (nanoGPT-style) |" in out and "| rmsnorm / pre / none |" in out and "| dyt / pre / none |" in out


def test_norm_kernels_prints_every_kind():
    out = _run("norm_kernels.py", "--shape", "2", "16", "64", "--rounds", "1", "--calls", "1", "--eager-only")
    for kind in ("rmsnorm", "dyt", "scalenorm", "preaffine_rmsnorm", "gated_rmsnorm", "layernorm"):
        assert f"| {kind} (eager) |" in out


def test_stacked_norms_prints_both_kinds():
    out = _run("stacked_norms.py", "--shapes", "2x8x16", "--rounds", "1")
    assert "| 2x8x16 | rmsnorm |" in out and "| 2x8x16 | layernorm |" in out


def test_gpu_benchmark_smoke_on_cpu():
    out = _run("gpu_124m.py", "--cpu-smoke", "--compile", "none", "--steps", "2", "--warmup", "1")
    assert "tokens/s" in out and "MFU" in out


def test_bf16_prints_plain_and_stacked_rows():
    out = _run("bf16.py", "--shapes", "proxies", "--members", "1", "2", "--steps", "1", "--rounds", "1")
    assert "AMX-BF16:" in out and "| proxies (d 128 x 4, T 64, B 16, V 27) | 1 |" in out and " | 2 | " in out


def test_compile_breakeven_measures_a_row_in_a_child_process():
    out = _run("compile_breakeven.py", "--shapes", "prepost", "--members", "1", "--steps", "1", "--rounds", "1",
               timeout=600)
    assert "each row in a fresh process" in out and "| prepost | 1 |" in out


def test_compile_breakeven_writes_this_cpus_entry_and_keeps_the_others(tmp_path, monkeypatch):
    import json

    monkeypatch.syspath_prepend(str(BENCH))
    import compile_breakeven
    from common import machine
    from normlab.training import accel

    def row(shape, members, be):
        return {"shape": shape, "members": members, "member_gflop": 0.01, "speedup": 1.5, "compile_s": 20.0,
                "break_even_member_steps": be}
    path = tmp_path / "compile_costs.json"
    path.write_text(json.dumps({"rule": "", "machines": [
        {"cpu": "Other CPU", "break_even_member_steps": 5, "measured": {"machine": "Other CPU, ...", "rows": []}},
        {"cpu": accel.cpu_name(), "break_even_member_steps": 7,
         "measured": {"machine": machine(), "rows": [row("a", 1, 7.0), row("b", 1, 3.0)]}}]}))
    compile_breakeven.write([row("a", 1, 4.0)], (1.0,), (1.0,), path)
    machines = {m["cpu"]: m for m in json.loads(path.read_text())["machines"]}
    assert machines["Other CPU"]["break_even_member_steps"] == 5                    # another CPU's entry: kept
    mine = machines[accel.cpu_name()]
    assert {(r["shape"], r["break_even_member_steps"]) for r in mine["measured"]["rows"]} == {("a", 4.0), ("b", 3.0)}
    assert mine["break_even_member_steps"] == 4                                     # the largest paying row's


def test_step_ops_prints_the_share_of_each_kind_of_op():
    out = _run("step_ops.py", "--shapes", "prepost", "--members", "2", "--steps", "1")
    assert "| prepost | 2 |" in out and "x |" in out
