"""Where a stacked eager step's time goes, by kind of op: matmuls, attention, everything else.

    python benchmarks/step_ops.py [--shapes bigram normfree prepost] [--members 5] [--steps 5] [--threads 1]

For each shape, E members set up as `normlab run` would and one stacked Engine (eager), a few steps warmed up,
then `--steps` steps under torch.profiler: each op's self CPU time summed by kind. The last column is the most
any step rewrite that keeps the same matmul and attention kernels could give (torch.compile on the CPU does:
inductor calls the same GEMMs and the flash kernel): total / (matmuls + attention). Where it is under 1.5x, the
issue's compile target cannot be met at that width by compiling.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import normlab as nl  # noqa: E402
from normlab.training import stacked_loop  # noqa: E402
from normlab.training.setup import setup  # noqa: E402

from common import machine  # noqa: E402

SHAPES = {"bigram": ("sink-mechanics", []), "normfree": ("normfree", ["model.norm.placement=none"]),
          "prepost": ("prepost", []), "zoo": ("zoo", [])}
QUIET = ["probes.every=0", "probes.grad_every=0", "probes.forensics=false", "train.eval_every=100000",
         "train.compile=none"]
MATMUL = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"}


def shares(shape: str, E: int, steps: int) -> dict:
    name, extra = SHAPES[shape]
    with tempfile.TemporaryDirectory() as d:
        cfgs = [nl.load_config(name, [*extra, *QUIET, f"train.seed={k}", f"name=r{k}", f"out_dir={d}"])
                for k in range(E)]
        engine = stacked_loop.Engine([setup(c, Path(d) / c.name) for c in cfgs])
        live = list(range(E))
        for i in range(3):
            engine.step(i, live, lambda: None)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for i in range(3, 3 + steps):
                engine.step(i, live, lambda: None)
            wall = (time.perf_counter() - t0) / steps
    total = mm = attn = 0.0
    for ev in prof.key_averages():
        total += ev.self_cpu_time_total
        if ev.key in MATMUL:
            mm += ev.self_cpu_time_total
        elif "scaled_dot_product" in ev.key:
            attn += ev.self_cpu_time_total
    return {"ms": 1e3 * wall, "mm": mm / total, "attn": attn / total, "bound": total / max(mm + attn, 1e-9)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["bigram", "normfree", "prepost"], choices=list(SHAPES))
    p.add_argument("--members", nargs="+", type=int, default=[5])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(machine())
    print("| shape | members | ms/step (profiled) | matmuls | attention | the rest | at most, keeping those kernels |\n"
          "|---|---|---|---|---|---|---|")
    for shape in a.shapes:
        for E in a.members:
            r = shares(shape, E, a.steps)
            print(f"| {shape} | {E} | {r['ms']:.1f} | {r['mm']:.0%} | {r['attn']:.0%} | {1 - r['mm'] - r['attn']:.0%} | "
                  f"{r['bound']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
