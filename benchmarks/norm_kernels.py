"""Forward+backward time of every registered norm kind vs F.layer_norm, eager and compiled.

    python benchmarks/norm_kernels.py            # x: 16 x 256 x 256 float32 (the large training shape)
    python benchmarks/norm_kernels.py --shape 32 16 16

Each kind is built from the registry (kinds added later are covered), run as in training
(`model.norm.affine=true`) on the same input and upstream gradient, interleaved over rounds;
cells are medians and ratios are against eager F.layer_norm (weight, no bias) measured in the
same rounds. The target of issue 6 is <= 1.5x for every kind at the large shape.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from common import machine, table
from normlab.config import NormConfig
from normlab.norms import NORMS, build_norm


def candidates(d: int, modes: list[str]) -> dict:
    ln_w = torch.ones(d, requires_grad=True)
    out = {"F.layer_norm (baseline)": lambda x: F.layer_norm(x, (d,), ln_w, None, 1e-5)}
    for kind in sorted(NORMS):
        for mode in modes:
            norm = build_norm(NormConfig(kind=kind), d, "attn_in")
            if mode == "compiled" and kind != "identity":
                norm.compile()
            elif mode == "compiled":
                continue
            out[f"{kind} ({mode})"] = norm
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", nargs=3, type=int, default=[16, 256, 256], metavar=("B", "T", "C"))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=5, help="calls per round and candidate (their mean is one sample)")
    ap.add_argument("--eager-only", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(*args.shape, requires_grad=True)
    grad = torch.randn(*args.shape)
    fns = candidates(args.shape[-1], ["eager"] if args.eager_only else ["eager", "compiled"])
    for f in fns.values():  # warm-up (and compile)
        for _ in range(3):
            f(x).backward(grad)
    times = {name: [] for name in fns}
    for _ in range(args.rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(args.calls):
                f(x).backward(grad)
            times[name].append((time.perf_counter() - t0) / args.calls)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["F.layer_norm (baseline)"]
    rows = [[k, f"{v * 1e3:.2f}", f"{v / base:.2f}x", "yes" if v / base <= 1.5 else "no"] for k, v in med.items()]
    print(f"machine: {machine()}\nx: {tuple(args.shape)} float32, fwd+bwd, median of {args.rounds} interleaved rounds x {args.calls} calls\n")
    print(table(["norm", "ms fwd+bwd", "vs F.layer_norm", "<= 1.5x"], rows))


if __name__ == "__main__":
    main()
