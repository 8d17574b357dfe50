"""One mixed stack vs one stack per placement (training/stacked_mix.py): training time of the same runs.

    python benchmarks/stack_mix.py [--shapes prepost zoo] [--placements pre post none] [--seeds 5] [--steps 200]
                                   [--rounds 3] [--threads 1]

For each shape, the runs placements x seeds train (a) as one mixed stack and (b) as one stack per placement,
one after the other, in this process, alternating the order each round; the time is the stacks' own
`group_train_time_s` (set-up, evaluation at the end and report excluded). Prints the median of each and the
ratio: a mixed stack is worth it where (b)/(a) > 1 (train.stack_placements is off by default because on CPU it
measured 1.00 at prepost's size, its best case). Ratios only mean something side by side in one run: wall times
drift with machine load.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import normlab as nl  # noqa: E402
from normlab.training.stacked_loop import train_stacked  # noqa: E402

SHAPES = {"prepost": "prepost", "zoo": "zoo"}   # the zoo's width is lr-sweep's and dyt-regime's too


def member_flops(cfg) -> float:
    """A member's matmul FLOPs a step, roughly: 6 x the blocks' weights (12 L d^2) x tokens."""
    m = cfg.model
    return 6 * 12 * m.n_layer * m.d_model ** 2 * cfg.train.batch_size * m.block_size


def train_time(cfgs, out: Path) -> float:
    train_stacked(cfgs, [out / c.name for c in cfgs])
    stacks = {json.dumps(json.loads((out / c.name / "summary.json").read_text())["stacked"]) for c in cfgs}
    return sum(json.loads(s)["group_train_time_s"] for s in stacks)


def configs(shape: str, placements: list[str], seeds: int, steps: int, out: Path, tag: str):
    quiet = [f"train.steps={steps}", f"train.eval_every={steps}", "train.eval_batches=1", "probes.every=0",
             "probes.grad_every=0", "probes.update_every=0", "sample.n=0"]
    return {p: [nl.load_config(SHAPES[shape], [f"model.norm.placement={p}", f"train.seed={s}", *quiet,
                                               f"name={tag}-{p}-{s}", f"out_dir={out}"])
                for s in range(seeds)] for p in placements}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    ap.add_argument("--placements", nargs="+", default=["pre", "post", "none"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print("| shape | member MFLOP/step | mixed stack (s) | a stack per placement (s) | per placement / mixed | rounds |\n"
          "|---|---|---|---|---|---|")
    for shape in a.shapes:
        times = {"mixed": [], "apart": []}
        flops = 0.0
        for r in range(a.rounds):
            for mode in (["mixed", "apart"] if r % 2 == 0 else ["apart", "mixed"]):
                with tempfile.TemporaryDirectory() as d:
                    by_placement = configs(shape, a.placements, a.seeds, a.steps, Path(d), f"{mode}{r}")
                    flops = member_flops(next(iter(by_placement.values()))[0])
                    if mode == "mixed":
                        t = train_time([c for cs in by_placement.values() for c in cs], Path(d))
                    else:
                        t = sum(train_time(cs, Path(d)) for cs in by_placement.values())
                    times[mode].append(t)
        m, s = statistics.median(times["mixed"]), statistics.median(times["apart"])
        print(f"| {shape} | {flops / 1e6:.1f} | {m:.2f} | {s:.2f} | {s / m:.2f} | {a.rounds} |", flush=True)


if __name__ == "__main__":
    main()
