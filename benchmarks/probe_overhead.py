"""Training tokens/s with probes off vs at the default frequency (not a test: timings are noisy).

    python benchmarks/probe_overhead.py [--config base] [--steps 300] [--repeats 2] [overrides ...]

"off" = probes.every=0, probes.grad_every=0, probes.forensics=false; "default" = ProbeConfig's
defaults (forward probes every 100 steps, grad norms every step, a last-good state every 100 steps).
Runs alternate off/default (order flipped every repeat) so a shared machine's load affects both alike; tokens/s is the loop's
own measure (train_time_s includes the probe passes). Target: overhead <= 10 %.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

import normlab as nl

OFF = ["probes.every=0", "probes.grad_every=0", "probes.forensics=false"]


def one(config: str, steps: int, extra: list[str], out: str, name: str) -> float:
    cfg = nl.load_config(config, [f"out_dir={out}", f"name={name}", f"train.steps={steps}",
                                  f"train.eval_every={10 * steps}", "sample.n=1", *extra])
    return nl.train(cfg)["tokens_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="base")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {"off": [], "default": []}
    with tempfile.TemporaryDirectory() as out:
        for r in range(args.repeats):
            for mode in (["off", "default"] if r % 2 == 0 else ["default", "off"]):  # alternate the order
                extra = args.overrides + (OFF if mode == "off" else [])
                results[mode].append(one(args.config, args.steps, extra, out, f"{mode}{r}"))
                print(f"  repeat {r} {mode:<8} {results[mode][-1]:>10.0f} tokens/s", flush=True)
    off, on = statistics.median(results["off"]), statistics.median(results["default"])
    # each repeat ran both modes back to back: their ratio cancels load that drifts over minutes
    paired = statistics.median(d / o for d, o in zip(results["default"], results["off"]))
    print(f"config {args.config} {' '.join(args.overrides)}; {args.steps} steps x {args.repeats}, "
          f"{args.threads} thread(s)")
    print(f"probes off:     {off:>10.0f} tokens/s (median)")
    print(f"probes default: {on:>10.0f} tokens/s (median)")
    print(f"ratio of medians default/off = {on / off:.3f}  (overhead {100 * (1 - on / off):.1f} %)")
    print(f"median of paired ratios      = {paired:.3f}  (overhead {100 * (1 - paired):.1f} %)")


if __name__ == "__main__":
    main()
