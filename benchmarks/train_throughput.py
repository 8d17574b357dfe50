"""Training tokens/s and MFU of normlab vs a nanoGPT-style reference, per norm kind x placement.

    python benchmarks/train_throughput.py            # both shapes, every valid kind x placement (~15 min on 2 cores)
    python benchmarks/train_throughput.py --quick    # fewer steps and rounds, for a smoke check
    python benchmarks/train_throughput.py --shapes seed003 --compile model --kinds rmsnorm layernorm

Rows run interleaved (round-robin, `--rounds` times, every other round reversed) and each cell is
the median seconds per step; ratios are against the reference measured in the same rounds; with `--compile model` a second
reference row runs nanoGPT with its own speed switches on (compile, fused AdamW). MFU
divides the model's FLOP/s (6N + 12 L T d per token) by an fp32 matmul peak this script measures
first. Kind x placement comes from the live registries and the validity matrix, so kinds added
later are covered without editing this file. Both runners share the process, so its allocator
setting (`--malloc`, default what `normlab train` uses) applies to both alike.
"""
from __future__ import annotations

import argparse

from common import (LARGE, SEED003, NormlabRunner, RefRunner, flops_per_token, interleaved, machine,
                    matmul_peak, normlab_config, setup_process, synthetic_data, table)
from normlab.model import PLACEMENTS, valid_pairs
from normlab.norms import NORMS

REF = "reference (nanoGPT-style)"
REF_TUNED = "reference + compile + fused AdamW"


def variants(kinds, placements, compile_modes: list[str]) -> list[tuple[str, str, str]]:
    """(kind, placement, compile): every valid kind x placement eager (placements without norm
    slots once, as "-"), then each kind at `pre` under each requested compile mode."""
    pairs = valid_pairs()
    out, seen_normless = [], set()
    for kind, placement in pairs:
        if kind not in kinds or placement not in placements:
            continue
        if not PLACEMENTS[placement].slots:
            if placement not in seen_normless:
                out.append(("-", placement, "none"))
                seen_normless.add(placement)
            continue
        out.append((kind, placement, "none"))
    out += [(k, "pre", c) for c in compile_modes for k in sorted(kinds) if (k, "pre") in pairs]
    return out


def bench_shape(shape, kinds, placements, compile_modes, steps, rounds, peak):
    data = synthetic_data(shape.block)
    runners = {REF: RefRunner(shape, data)}
    if "model" in compile_modes:
        runners[REF_TUNED] = RefRunner(shape, data, tuned=True)
    for kind, placement, mode in variants(kinds, placements, compile_modes):
        cfg = normlab_config(shape, "rmsnorm" if kind == "-" else kind, placement, mode)
        runners[f"{kind} / {placement} / {mode}"] = NormlabRunner(cfg, data)
    print(f"[{shape.name}] {len(runners)} runners, warming up (compiles happen here) ...", flush=True)
    sec = interleaved(runners, steps, rounds)
    ref = sec[REF]
    tokens = shape.batch * shape.block
    rows = []
    for name, s in sec.items():
        n_params = sum(p.numel() for p in runners[name].model.parameters())
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
    ap.add_argument("--kinds", nargs="+", default=sorted(NORMS), choices=sorted(NORMS))
    ap.add_argument("--placements", nargs="+", default=sorted(PLACEMENTS), choices=sorted(PLACEMENTS))
    ap.add_argument("--compile", nargs="*", default=["model"], choices=["norms", "model"],
                    help="compile modes to add at placement pre (none: eager only)")
    ap.add_argument("--steps", type=int, default=None, help="steps per round (default 3 large / 50 seed003)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--malloc", choices=["retain", "default"], default="retain",
                    help="glibc allocator setting for this process (train.cpu_malloc)")
    args = ap.parse_args()
    allocator = setup_process(args.threads, args.malloc)
    peak = matmul_peak()
    print(f"machine: {machine()}\n{allocator}\nfp32 matmul peak (1024^3, measured): {peak / 1e9:.0f} GFLOP/s\n",
          flush=True)
    for name in args.shapes:
        shape = {"large": LARGE, "seed003": SEED003}[name]
        steps = args.steps or ((2 if args.quick else 3) if shape is LARGE else (20 if args.quick else 50))
        rounds = args.rounds or (2 if args.quick else 3)
        print(bench_shape(shape, args.kinds, args.placements, args.compile, steps, rounds, peak) + "\n", flush=True)


if __name__ == "__main__":
    main()
