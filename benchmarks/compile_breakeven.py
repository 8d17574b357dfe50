"""The stacked step eager vs compiled (train.compile=model), and the break-even train.compile=auto uses.

    python benchmarks/compile_breakeven.py [--shapes prepost bigram normfree] [--members 1 5 25] [--steps 20]
                                           [--rounds 3] [--threads 1] [--write]

For each shape and stack size E, in a fresh process: E runs set up as `normlab run` would (training/setup.py),
one stacked Engine eager and one compiled (E = 1: the plain train_step, what a run alone uses), the compiled one's
first steps timed as its compile (a fresh inductor cache: the cold cost a first run pays; `--warm` keeps the default
cache), then both timed in alternating rounds (benchmarks/common.timed_rounds). Prints a Markdown table; --write
stores the break-even in src/normlab/training/compile_costs.json:

    break-even member-steps = max over the rows where compiling saves time of
                              compile seconds / (eager - compiled) seconds per member-step

the most conservative row (a run past it repays its compile at every measured shape). Rows where compiled is not
faster never repay it and are listed in the file, not used. Each row also keeps its size (member_gflop: 6 N x
tokens per member-step), by which train.compile=auto finds the measured row nearest a run (training/accel.py).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SHAPES = {"prepost": ("prepost", []),
          "bigram": ("sink-mechanics", []),                       # Bigram-Backcopy (experiments/sink-mechanics)
          "normfree": ("normfree", ["model.norm.placement=none"])}
RULE = ("train.compile=auto: the row nearest the run (log member_gflop, log members) decides: eager where compiling "
        "was slower there, else compile once steps x members reaches its break_even_member_steps; without a size, "
        "the top-level break_even_member_steps (the largest paying row's); one entry per CPU model (lscpu's model "
        "name): a CPU not listed takes the most cautious row of each shape")
QUIET = ["probes.every=0", "probes.grad_every=0", "probes.forensics=false", "train.eval_every=100000"]


def _runs(shape: str, E: int, out: Path, compile_mode: str):
    import normlab as nl
    from normlab.training.setup import setup

    name, extra = SHAPES[shape]
    return [setup(nl.load_config(name, [*extra, *QUIET, f"train.seed={k}", f"name={compile_mode}{k}",
                                        f"train.compile={compile_mode}", f"out_dir={out}"]), out / f"{compile_mode}{k}")
            for k in range(E)]


def measure(shape: str, E: int, steps: int, rounds: int) -> dict:
    from common import step_function, timed_rounds

    with tempfile.TemporaryDirectory() as tmp:
        from normlab.training.accel import member_gflop

        runs = _runs(shape, E, Path(tmp), "none")
        gflop = member_gflop(runs[0].trainer.model, 1, runs[0].cfg.train.batch_size)
        eager = step_function(runs)
        compiled = step_function(_runs(shape, E, Path(tmp), "model"))
        eager(0)
        t0 = time.perf_counter()
        compiled(0)
        compiled(1)   # the second call builds nothing more where the graph is stable
        compile_s = time.perf_counter() - t0
        state = {"s": 2}

        def run(fn):
            for _ in range(steps):
                fn(state["s"] % 50)
                state["s"] += 1
        t = timed_rounds({"eager": lambda: run(eager), "compiled": lambda: run(compiled)}, rounds, per_call=steps)
    saved = (t["eager"] - t["compiled"]) / E
    return {"shape": shape, "members": E, "member_gflop": gflop, "eager_ms": 1e3 * t["eager"],
            "compiled_ms": 1e3 * t["compiled"],
            "speedup": t["eager"] / t["compiled"], "compile_s": compile_s,
            "break_even_member_steps": compile_s / saved if saved > 0 else None}


def _row_in_child(shape: str, E: int, a) -> dict:
    """One row measured in a fresh process: in one process, every model after the first timed 1.5x slower, eager
    too (bigram x5: 93.8 vs 62.1 ms eager, 98.2 vs 53.8 compiled), which turned paying rows into "never"."""
    cmd = [sys.executable, __file__, "--one", shape, str(E), "--steps", str(a.steps), "--rounds", str(a.rounds),
           "--threads", str(a.threads)] + (["--warm"] if a.warm else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("ROW ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(line[4:])


def _one_row(shape: str, E: int, a) -> None:
    if not a.warm:   # a fresh inductor cache per row: the cold cost a first run pays
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
    import torch

    from common import setup_process

    torch.set_num_threads(a.threads)
    setup_process(a.threads)
    print("ROW " + json.dumps(measure(shape, E, a.steps, a.rounds)), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--members", nargs="+", type=int, default=[1, 5, 25])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warm", action="store_true", help="keep the inductor cache (default: a fresh one, cold compiles)")
    p.add_argument("--write", action="store_true", help="store the break-even in training/compile_costs.json")
    p.add_argument("--one", nargs=2, metavar=("SHAPE", "E"), help=argparse.SUPPRESS)   # a row, in a child process
    a = p.parse_args()
    if a.one:
        _one_row(a.one[0], int(a.one[1]), a)
        return
    import torch

    from common import machine

    torch.set_num_threads(a.threads)   # what machine() names (the rows run in children with the same setting)
    load = os.getloadavg()
    print(f"{machine()}; load {load[0]:.1f} at start; "
          f"{'warm' if a.warm else 'cold'} inductor cache; each row in a fresh process")
    print("| shape | members | eager ms/step | compiled ms/step | speedup | compile s | break-even member-steps |\n"
          "|---|---|---|---|---|---|---|")
    rows = []
    for shape in a.shapes:
        for E in a.members:
            r = _row_in_child(shape, E, a)
            r["load"] = [round(load[0], 1), round(os.getloadavg()[0], 1)]
            rows.append(r)
            be = f"{r['break_even_member_steps']:,.0f}" if r["break_even_member_steps"] else "never"
            print(f"| {shape} | {E} | {r['eager_ms']:.2f} | {r['compiled_ms']:.2f} | {r['speedup']:.2f}x | "
                  f"{r['compile_s']:.1f} | {be} |", flush=True)
    end = os.getloadavg()
    print(f"load {end[0]:.1f} at the end")
    if a.write:
        write(rows, load, end)


def write(rows: list, load, end, path: Path = ROOT / "src" / "normlab" / "training" / "compile_costs.json") -> None:
    """This CPU's entry of compile_costs.json (the other CPUs' entries kept): its earlier rows of other shapes are
    kept where they were measured the same way (same CPU, threads, torch and ISA)."""
    from common import machine
    from normlab.training.accel import cpu_name

    data = json.loads(path.read_text()) if path.exists() else {}
    machines = data.get("machines", [])
    cpu = cpu_name()
    earlier = next((m["measured"] for m in machines if m.get("cpu") == cpu), {})
    same = lambda m: m.rsplit(", ", 1)[0]   # noqa: E731  (machine() ends with the date)
    if same(earlier.get("machine", "")) == same(machine()):
        mine = {(r["shape"], r["members"]) for r in rows}
        rows = [r for r in earlier["rows"] if (r["shape"], r["members"]) not in mine] + rows
    paying = [r["break_even_member_steps"] for r in rows if r["break_even_member_steps"]]
    entry = {"cpu": cpu, "break_even_member_steps": round(max(paying)) if paying else None,
             "measured": {"by": "benchmarks/compile_breakeven.py " + " ".join(sys.argv[1:]), "machine": machine(),
                          "date": datetime.date.today().isoformat(), "load": [round(load[0], 1), round(end[0], 1)],
                          "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                                capture_output=True).stdout.strip(),
                          "rows": [{k: (round(v, 6) if k == "member_gflop" else round(v, 3) if isinstance(v, float)
                                    else v) for k, v in r.items()} for r in rows]}}
    out = {"rule": RULE, "machines": [m for m in machines if m.get("cpu") != cpu] + [entry]}
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
