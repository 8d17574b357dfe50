"""Training tokens/s and MFU of normlab vs a nanoGPT-style reference, per norm kind x placement.

    python benchmarks/train_throughput.py            # both shapes, every kind x placement, ~15 min on 2 cores
    python benchmarks/train_throughput.py --quick    # fewer steps and rounds, for a smoke check
    python benchmarks/train_throughput.py --shapes seed003 --compile model

Rows run interleaved (round-robin, `--rounds` times) and each cell is the median seconds per step;
ratios are against the reference measured in the same rounds. MFU divides the model's FLOP/s
(6N + 12 L T d per token) by an fp32 matmul peak this script measures first. Kind x placement
comes from the live registries, so kinds added later are covered without editing this file.
"""
from __future__ import annotations

import argparse

import torch

from common import (LARGE, SEED003, NormlabRunner, RefRunner, flops_per_token, interleaved, machine,
                    matmul_peak, normlab_config, synthetic_data, table)
from normlab.model import PLACEMENTS
from normlab.norms import NORMS


def variants(compile_modes: list[str]) -> list[tuple[str, str, str]]:
    """(kind, placement, compile): every kind x placement eager (placement `none` once, it has no
    norms), then each kind at `pre` under each requested compile mode."""
    out = [("-", "none", "none")] if "none" in PLACEMENTS else []
    out += [(k, p, "none") for k in sorted(NORMS) for p in sorted(PLACEMENTS) if p != "none"]
    out += [(k, "pre", c) for c in compile_modes for k in sorted(NORMS)]
    return out


def bench_shape(shape, compile_modes, steps, rounds, peak):
    data = synthetic_data(shape.block)
    runners = {"reference (nanoGPT-style)": RefRunner(shape, data)}
    for kind, placement, mode in variants(compile_modes):
        cfg = normlab_config(shape, "identity" if kind == "-" else kind, placement, mode)
        runners[f"{kind} / {placement} / {mode}"] = NormlabRunner(cfg, data)
    print(f"[{shape.name}] {len(runners)} runners, warming up (compiles happen here) ...", flush=True)
    sec = interleaved(runners, steps, rounds)
    ref = sec["reference (nanoGPT-style)"]
    tokens = shape.batch * shape.block
    rows = []
    for name, s in sec.items():
        r = runners[name]
        n_params = sum(p.numel() for p in r.model.parameters())
        tps = tokens / s
        mfu = flops_per_token(shape, n_params) * tps / peak
        rows.append([name, f"{s * 1e3:.1f}", f"{tps:,.0f}", f"{100 * mfu:.1f}%", f"{ref / s:.2f}x"])
    title = (f"### {shape.name}: vocab {shape.vocab}, d {shape.d}, {shape.heads} heads, {shape.layers} layers, "
             f"block {shape.block}, batch {shape.batch}; median of {rounds} rounds x {steps} steps")
    return title + "\n\n" + table(["kind / placement / compile", "ms/step", "tokens/s", "MFU", "vs ref"], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 rounds x 2 steps (large) / 20 steps (seed003)")
    ap.add_argument("--shapes", nargs="+", default=["large", "seed003"], choices=["large", "seed003"])
    ap.add_argument("--compile", nargs="*", default=["model"], choices=["norms", "model"],
                    help="compile modes to add at placement pre (none: eager only)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(f"machine: {machine()}\nfp32 matmul peak (1024^3, measured): {peak / 1e9:.0f} GFLOP/s\n", flush=True)
    for name in args.shapes:
        shape = {"large": LARGE, "seed003": SEED003}[name]
        steps = (2 if args.quick else 5) if shape is LARGE else (20 if args.quick else 100)
        rounds = args.rounds or (2 if args.quick else 3)
        print(bench_shape(shape, args.compile, steps, rounds, peak) + "\n", flush=True)


if __name__ == "__main__":
    main()
