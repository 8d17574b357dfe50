"""Stacked training vs one process per run: whole experiments, and steps/s against the stack size.

    python benchmarks/stacked.py experiments [--experiments prepost normfree] [--jobs 2] [--rounds 1] [--seeds 5]
    python benchmarks/stacked.py sizes [--sizes 1 3 9 27 81] [--shapes prepost normfree zoo] [--steps 30]
    python benchmarks/stacked.py threads                  # one stack with 1 vs 2 threads, 1 vs 2 jobs
    python benchmarks/stacked.py equivalence [--experiments prepost] [--margin 0.05] [--dirs STACKED PLAIN]

`experiments` runs `normlab run X` (a fresh --out each time, so nothing is reused) with stacking and
with --no-stack, alternating the order each round, same --jobs, and prints wall times and the ratio
(process start-up counts: each --no-stack run is a process importing torch). `sizes` times the
stacked step (training/stacked_loop.Engine.step, the real one) for E members against E plain steps
(training/step.train_step) of the same shape in this process, interleaved. Ratios only mean
something side by side in one run: wall times drift ±10 % with machine load.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import normlab as nl  # noqa: E402

SHAPES = {"prepost": ("prepost", []), "prepost-none": ("prepost", ["model.norm.placement=none"]),
          "normfree": ("normfree", ["model.norm.placement=none"]),
          "zoo": ("zoo", [])}   # zoo: its base (RMSNorm, pre); every zoo variant has this width


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def experiments(names: list[str], jobs: int, rounds: int, extra: list[str]) -> None:
    """Wall time stacked vs --no-stack per experiment, and whether the two give the same verdicts."""
    import json

    exe = [sys.executable, "-m", "normlab", "run"]
    print("| experiment | stacked (s) | --no-stack (s) | speedup | rounds | jobs | verdicts |\n"
          "|---|---|---|---|---|---|---|")
    for name in names:
        times, verdicts = {"stack": [], "nostack": []}, {}
        for r in range(rounds):
            order = ["stack", "nostack"] if r % 2 == 0 else ["nostack", "stack"]
            for mode in order:
                with tempfile.TemporaryDirectory() as out:
                    flags = ["--jobs", str(jobs), "--out", out] + (["--no-stack"] if mode == "nostack" else [])
                    times[mode].append(wall(exe + [name, *extra, *flags]))
                    results = next(Path(out).glob("*/results.json"))
                    verdicts.setdefault(mode, {c["id"]: c["verdict"] for c in json.loads(results.read_text())["claims"]})
        s, n = statistics.median(times["stack"]), statistics.median(times["nostack"])
        differ = [f"{c}: {v} vs {verdicts['nostack'].get(c)}" for c, v in verdicts["stack"].items()
                  if verdicts["nostack"].get(c) != v]
        same = f"{len(verdicts['stack']) - len(differ)}/{len(verdicts['stack'])} same" + (
            f" (differ: {'; '.join(differ)})" if differ else "")
        print(f"| {name} | {s:.1f} | {n:.1f} | {n / s:.2f}x | {rounds} | {jobs} | {same} |", flush=True)


def _runs(shape: str, E: int, out: Path):
    from normlab.training.setup import setup

    name, extra = SHAPES[shape]
    runs = []
    for k in range(E):
        cfg = nl.load_config(name, [*extra, f"train.seed={k}", f"name=r{k}", f"out_dir={out}", "probes.every=0",
                                    "probes.grad_every=0", "probes.forensics=false", "train.eval_every=100000"])
        runs.append(setup(cfg, out / f"r{k}"))
    return runs


def sizes(shapes: list[str], counts: list[int], steps: int, rounds: int) -> None:
    from normlab.training.stacked_loop import Engine
    from normlab.training.step import train_step

    torch.set_num_threads(1)
    print("| shape | members | stacked step (ms) | E plain steps (ms) | per-member speedup | members x steps/s |\n"
          "|---|---|---|---|---|---|")
    for shape in shapes:
        for E in counts:
            with tempfile.TemporaryDirectory() as tmp:
                runs = _runs(shape, E, Path(tmp))
                engine = Engine(runs)
                everyone = list(range(E))
                plain = runs[: min(E, 3)]  # E plain steps are timed as E/3 x the time of 3 (a plain step is E-free)
                st, pl = [], []
                for r in range(rounds + 1):
                    t0 = time.perf_counter()
                    for s in range(steps):
                        engine.step(s, everyone, lambda: None)
                    t1 = time.perf_counter()
                    for s in range(steps):
                        for run in plain:
                            train_step(run.trainer, run.batch(s), s)
                    t2 = time.perf_counter()
                    if r:  # round 0 warms up
                        st.append((t1 - t0) / steps)
                        pl.append((t2 - t1) / steps * E / len(plain))
                a, b = statistics.median(st), statistics.median(pl)
                print(f"| {shape} | {E} | {1e3 * a:.2f} | {1e3 * b:.2f} | {b / a:.2f}x | {E / a:.0f} |", flush=True)


def threads(steps: int) -> None:
    """One 15-member prepost stack: 1 vs 2 OpenMP threads (what the runner gives a worker at --jobs 2 vs 1)."""
    from normlab.training.stacked_loop import Engine

    for n in (1, 2, 1, 2):
        torch.set_num_threads(n)
        with tempfile.TemporaryDirectory() as tmp:
            runs = _runs("prepost", 15, Path(tmp))
            engine = Engine(runs)
            everyone = list(range(15))
            engine.step(0, everyone, lambda: None)
            t0 = time.perf_counter()
            for s in range(steps):
                engine.step(s, everyone, lambda: None)
            print(f"threads {n}: {1e3 * (time.perf_counter() - t0) / steps:.2f} ms per stacked step", flush=True)


def equivalence(name: str, margin: float, jobs: int, dirs: list[str] | None, extra: list[str]) -> None:
    """Same distribution: each variant's final val loss stacked vs --no-stack, paired by seed, by a TOST within
    +-margin (report/evidence.equivalence; 'supported' = the 95 % CI inside the margin and p < 0.05). A seed's
    two runs differ by chaotic growth of rounding (batched matmuls round differently), not by a bias."""
    import json

    from normlab.report.evidence import equivalence as tost, verdict

    if dirs is None:
        dirs = [tempfile.mkdtemp(prefix=f"{name}-{mode}-") for mode in ("stacked", "plain")]
        for d, flags in zip(dirs, ([], ["--no-stack"])):
            took = wall([sys.executable, "-m", "normlab", "run", name, *extra, *flags, "--jobs", str(jobs), "--out", d])
            print(f"normlab run {name} {' '.join(extra + flags)} --out {d}: {took:.1f} s", flush=True)
    loss = []
    for d in dirs:   # an experiment folder, or a parent of several (e.g. seeds 0-4 and 5-9 run apart)
        exps = [Path(d, "experiment.json")]
        exps = exps if exps[0].exists() else sorted(Path(d).glob("*/experiment.json"))
        loss.append({(r["variant"], r["seed"]): json.loads((exp.parent / r["dir"] / "summary.json").read_text())
                     .get("val_loss") for exp in exps for r in json.loads(exp.read_text())["runs"]})
    print(f"| variant | n | mean stacked - plain | 95 % CI | TOST p (margin {margin}) | verdict |\n|---|---|---|---|---|---|")
    for variant in sorted({v for v, _ in loss[0]}):
        seeds = sorted(s for v, s in loss[0] if v == variant and (v, s) in loss[1])
        a = [loss[0][(variant, s)] for s in seeds]
        b = [loss[1][(variant, s)] for s in seeds]
        ev = tost(a, b, margin)
        print(f"| {variant} | {ev.n} | {ev.estimate:+.4f} | [{ev.ci95[0]:+.4f}, {ev.ci95[1]:+.4f}] | {ev.p:.3g} | "
              f"{verdict(ev, 'equivalent', ev.p, margin=margin)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["experiments", "sizes", "threads", "equivalence"])
    ap.add_argument("--margin", type=float, default=0.05, help="`equivalence`: the TOST margin in nats")
    ap.add_argument("--dirs", nargs=2, default=None, help="`equivalence`: finished stacked and --no-stack --out folders")
    ap.add_argument("--experiments", nargs="+", default=["prepost", "normfree", "lr-sweep", "zoo"])
    ap.add_argument("--overrides", nargs="*", default=[], help="extra dotted overrides for `experiments`")
    ap.add_argument("--seeds", default=None, help="`experiments`: normlab run --seeds (default: each experiment's)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 9, 27, 81])
    ap.add_argument("--shapes", nargs="+", default=["prepost", "normfree"], choices=list(SHAPES))
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    if args.what == "experiments":
        experiments(args.experiments, args.jobs, args.rounds,
                    [*args.overrides, *(["--seeds", args.seeds] if args.seeds else [])])
    elif args.what == "equivalence":
        for name in args.experiments:
            equivalence(name, args.margin, args.jobs, args.dirs, [*args.overrides, *(["--seeds", args.seeds] if args.seeds else [])])
    elif args.what == "sizes":
        sizes(args.shapes, args.sizes, args.steps, args.rounds)
    else:
        threads(args.steps)


if __name__ == "__main__":
    main()
