"""The training step in bf16 (train.dtype=bfloat16) vs float32, plain and stacked, on this CPU.

    python benchmarks/bf16.py [--shapes d256 d128 proxies prepost bigram normfree zoo] [--members 1 5]
                              [--steps 10] [--rounds 5] [--threads 2] [--compile none|model]

A row per shape (a written-out width, or a shipped experiment's base run as it is configured) and stack size E:
the real step (E = 1: training/step.train_step, what a run alone uses; E > 1: the stacked Engine) set up as
`normlab run` would (training/setup.py), float32 and bfloat16 timed in alternating rounds
(benchmarks/common.timed_rounds), and the bf16 / fp32 ratio. The header names the CPU and whether it has AMX-BF16
(without it the bf16 rows are forced with train.cpu_bf16=force and measure nothing one would want), and the
measured 1024^2 matmul peak in each dtype: the ceiling a step's matmuls could reach. Ratios only mean something
side by side in one run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LARGE, Shape, machine, matmul_peak, setup_process, step_function, timed_rounds  # noqa: E402

SHAPES = {"d256": LARGE,                                              # 8192 vocab, d 256 x 6 layers, T 256, B 16
          "d128": Shape("d128", 8192, 128, 4, 4, 256, 16),            # the same data, d 128 x 4 layers
          "proxies": Shape("proxies", 27, 128, 4, 4, 64, 16)}        # experiments/proxies' default width and context
EXPERIMENTS = {"prepost": ("prepost", []),                            # a shipped experiment's base run, as configured
               "bigram": ("sink-mechanics", []),                      # Bigram-Backcopy
               "normfree": ("normfree", ["model.norm.placement=none"]),
               "zoo": ("zoo", [])}
QUIET = ["probes.every=0", "probes.grad_every=0", "probes.forensics=false", "train.eval_every=1000000",
         "train.steps=1000000", "train.log_every=10"]


def _runs(name: str, E: int, out: Path, dtype: str, compile_mode: str):
    import normlab as nl
    from normlab.training.setup import setup

    over = [f"train.dtype={dtype}", "train.cpu_bf16=force", f"train.compile={compile_mode}", *QUIET]
    if name in EXPERIMENTS:
        base, extra = EXPERIMENTS[name]
        over = [*extra, *over]
    else:
        s, base = SHAPES[name], "debug"
        over = [f"model.vocab_size={s.vocab}", f"model.d_model={s.d}", f"model.n_head={s.heads}",
                f"model.n_layer={s.layers}", f"model.block_size={s.block}", f"train.batch_size={s.batch}",
                "data.batching=packed", *over]
    return [setup(nl.load_config(base, [*over, f"train.seed={k}", f"name={dtype}{k}", f"out_dir={out}"]),
                  out / f"{dtype}{k}") for k in range(E)]


def describe(name: str, runs) -> str:
    m, t = runs[0].cfg.model, runs[0].cfg.train
    return f"{name} (d {m.d_model} x {m.n_layer}, T {m.block_size}, B {t.batch_size}, V {m.vocab_size})"


def measure(name: str, E: int, steps: int, rounds: int, compile_mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        runs = {dtype: _runs(name, E, Path(tmp), dtype, compile_mode) for dtype in ("float32", "bfloat16")}
        fns = {dtype: step_function(r) for dtype, r in runs.items()}
        state = {"s": 0}

        def run(fn):
            for _ in range(steps):
                fn(state["s"] % 50)
                state["s"] += 1
        for fn in fns.values():   # warm-up: first-call allocations and autocast's kernels
            run(fn)
        t = timed_rounds({k: (lambda f=f: run(f)) for k, f in fns.items()}, rounds, per_call=steps)
    return {"label": describe(name, runs["float32"]), "fp32_ms": 1e3 * t["float32"], "bf16_ms": 1e3 * t["bfloat16"],
            "speedup": t["float32"] / t["bfloat16"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["d256", "d128"], choices=[*SHAPES, *EXPERIMENTS])
    p.add_argument("--members", nargs="+", type=int, default=[1, 5])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", default="none", choices=["none", "model"], help="train.compile of both rows")
    a = p.parse_args()
    import torch

    from normlab.training.accel import cpu_has_amx_bf16

    setup_process(a.threads)
    fp32, bf16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"{machine()}; AMX-BF16: {'yes' if cpu_has_amx_bf16() else 'NO (bf16 forced)'}; load "
          f"{os.getloadavg()[0]:.1f}; train.compile={a.compile}; 1024^2 matmul: fp32 {fp32 / 1e9:.0f}, "
          f"bf16 {bf16 / 1e9:.0f} GFLOP/s")
    print("| shape | members | fp32 ms/step | bf16 ms/step | bf16 speedup |\n|---|---|---|---|---|")
    for name in a.shapes:
        for E in a.members:
            r = measure(name, E, a.steps, a.rounds, a.compile)
            print(f"| {r['label']} | {E} | {r['fp32_ms']:.1f} | "
                  f"{r['bf16_ms']:.1f} | {r['speedup']:.2f}x |", flush=True)
    print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
