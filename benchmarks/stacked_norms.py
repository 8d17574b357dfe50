"""A stack's RMSNorm and LayerNorm (parameters [E, 1, C], training/stacked.py): the fused kernel without the
parameters and then each member's broadcast affine (what norms/rmsnorm.py and norms/layernorm.py run) vs the
written-out formula (what they ran before), forward + backward, float32, 1 thread.

    python benchmarks/stacked_norms.py [--shapes 5x16x16 5x256x32 5x2048x32 5x1024x64] [--rounds 21]

Cells are medians of interleaved rounds (common.timed_rounds); RMSNorm's crossover sets kernels.RMS_KERNEL_MIN_NUMEL.
"""
from __future__ import annotations

import argparse

import torch

from common import machine, setup_process, table, timed_rounds
from normlab.config import NormConfig
from normlab.norms import build_norm


def formula(kind: str, x, w, b, eps: float = 1e-5):
    if kind == "rmsnorm":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    mean = x.mean(-1, keepdim=True)
    return (x - mean) * torch.rsqrt((x - mean).square().mean(-1, keepdim=True) + eps) * w + b


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["5x16x16", "15x16x16", "5x256x32", "5x2048x32", "5x1024x64"])
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args()
    setup_process(1)
    print(machine())
    rows = []
    for shape in args.shapes:
        E, N, C = (int(v) for v in shape.split("x"))
        x = torch.randn(E, N, C, requires_grad=True)
        w = (1 + 0.1 * torch.randn(E, 1, C)).requires_grad_()
        b = (0.1 * torch.randn(E, 1, C)).requires_grad_()
        up = torch.randn(E, N, C)
        calls = max(1, 200_000 // (E * N * C))
        for kind in ("rmsnorm", "layernorm"):
            norm = build_norm(NormConfig(kind=kind, bias=kind == "layernorm"), C)
            norm.weight = torch.nn.Parameter(w.detach().clone())   # the member axis, as a stack binds it
            if kind == "layernorm":
                norm.bias = torch.nn.Parameter(b.detach().clone())
            fns = {"formula": lambda: formula(kind, x, w, b).backward(up),
                   "normlab": lambda: norm(x).backward(up)}
            med = timed_rounds(fns, args.rounds, calls)
            rows.append([shape, kind, f"{1e6 * med['formula']:.1f}", f"{1e6 * med['normlab']:.1f}",
                         f"{med['formula'] / med['normlab']:.2f}x"])
    print(table(["E x N x C", "kind", "formula (us)", "normlab (us)", "speedup"], rows))


if __name__ == "__main__":
    main()
