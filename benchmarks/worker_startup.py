"""A sweep worker's start-up: a fresh interpreter that imports normlab's engines and trains one short run (what a
worker does before its first task's first steps), timed in wall and CPU seconds, and whether it imported
torch._dynamo.

    PYTHONPATH=<tree>/src python benchmarks/worker_startup.py [--rounds 3]

Run it under two source trees (before / after) alternately to compare; the CPU seconds (user + sys of the
child) are the load-robust number on a shared machine."""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CHILD = r"""
import sys, time, tempfile
t0 = time.perf_counter()
from normlab.config import load_config
from normlab.training import train
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    train(load_config("debug", ["train.steps=2", "train.eval_every=2", "sample.n=1", "train.compile=none"]), d + "/r")
print({"import_s": t1 - t0, "first_run_s": time.perf_counter() - t1, "dynamo": "torch._dynamo" in sys.modules})
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    for _ in range(a.rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(json.dumps({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load": round(os.getloadavg()[0], 1),
                          **eval(out.stdout.strip().splitlines()[-1])}), flush=True)


if __name__ == "__main__":
    main()
