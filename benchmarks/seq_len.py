"""Training step time vs sequence length (128 ... 1024) at the large width, normlab vs reference.

    python benchmarks/seq_len.py                 # T in 128 256 512 1024, tokens per step fixed at 4096
    python benchmarks/seq_len.py --quick

Tokens per step are held at 4096 (batch = 4096 / T), so growth in ms/step is the attention's
T^2 term, not more data. normlab runs its default rmsnorm / pre, eager; rows are interleaved.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from common import (LARGE, NormlabRunner, RefRunner, interleaved, machine, normlab_config, setup_process,
                    synthetic_data, table)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", nargs="+", type=int, default=[128, 256, 512, 1024])
    ap.add_argument("--tokens", type=int, default=4096, help="tokens per step (batch = tokens / T)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    allocator = setup_process(args.threads)
    steps, rounds = (2, 2) if args.quick else (4, 3)
    print(f"machine: {machine()}\n{allocator}\n")
    rows = []
    for T in args.lengths:
        shape = replace(LARGE, block=T, batch=max(1, args.tokens // T))
        data = synthetic_data(T)
        runners = {"ref": RefRunner(shape, data),
                   "normlab": NormlabRunner(normlab_config(shape, "rmsnorm", "pre"), data)}
        sec = interleaved(runners, steps, rounds)
        rows.append([T, shape.batch, f"{sec['ref'] * 1e3:.0f}", f"{sec['normlab'] * 1e3:.0f}",
                     f"{sec['ref'] / sec['normlab']:.2f}x"])
        print(f"T={T} done", flush=True)
    print(f"\nd {LARGE.d}, {LARGE.layers} layers, {LARGE.heads} heads, vocab {LARGE.vocab}; "
          f"median of {rounds} rounds x {steps} steps\n")
    print(table(["T", "batch", "ref ms/step", "normlab ms/step", "normlab speed vs ref"], rows))


if __name__ == "__main__":
    main()
