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
