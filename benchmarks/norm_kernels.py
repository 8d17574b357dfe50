"""Forward+backward time of every registered norm kind vs F.layer_norm, eager and compiled.

    python benchmarks/norm_kernels.py            # x: 16 x 256 x 256 float32 (the large training shape)
    python benchmarks/norm_kernels.py --shape 32 16 16

Each kind is built from the registry (kinds added later are covered), run as in training
(`model.norm.affine=true`) on the same input and upstream gradient, interleaved over rounds;
cells are medians and ratios are against eager F.layer_norm (weight, no bias) measured in the
same rounds (every other round reversed). The target of issue 6 is <= 1.5x for every kind at the
large shape. Eager float32 on the CPU runs the kinds' hand-written kernels (norms/kernels.py);
`--written-out` times the plain autograd formulas instead (what CUDA and compile start from).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common import machine, setup_process, table, timed_rounds
from normlab.config import NormConfig
from normlab.norms import NORMS, build_norm, kernels


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
    ap.add_argument("--rounds", type=int, default=41)
    ap.add_argument("--calls", type=int, default=10, help="calls per round and candidate (their mean is one sample)")
    ap.add_argument("--eager-only", action="store_true")
    ap.add_argument("--written-out", action="store_true", help="eager without norms/kernels.py")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--malloc", choices=["retain", "default"], default="retain")
    args = ap.parse_args()
    allocator = setup_process(args.threads, args.malloc)
    if args.written_out:
        kernels.ENABLED = False
    torch.manual_seed(0)
    x = torch.randn(*args.shape, requires_grad=True)
    grad = torch.randn(*args.shape)
    fns = candidates(args.shape[-1], ["eager"] if args.eager_only else ["eager", "compiled"])
    for f in fns.values():  # warm-up (and compile)
        for _ in range(3):
            f(x).backward(grad)
    med = timed_rounds({name: (lambda f=f: f(x).backward(grad)) for name, f in fns.items()}, args.rounds, args.calls)
    base = med["F.layer_norm (baseline)"]
    rows = [[k, f"{v * 1e3:.2f}", f"{v / base:.2f}x", "yes" if v / base <= 1.5 else "no"] for k, v in med.items()]
    form = "written-out autograd formulas" if args.written_out else "norms/kernels.py on the CPU"
    print(f"machine: {machine()}\n{allocator}\neager form: {form}\n"
          f"x: {tuple(args.shape)} float32, fwd+bwd, median of {args.rounds} interleaved rounds x {args.calls} calls\n")
    print(table(["norm", "ms fwd+bwd", "vs F.layer_norm", "<= 1.5x"], rows))


if __name__ == "__main__":
    main()
