"""An eager training process never imports torch._dynamo (training/nodynamo.py): a plain run (AdamW), a Muon
run and a stack of two, trained in a fresh interpreter, leave it out of sys.modules."""
import json
import subprocess
import sys

SCRIPT = r"""
import json, sys, tempfile
from dataclasses import asdict
from normlab.config import load_config
from normlab.experiments.runner import train_task
from normlab.training import train

short = ["train.steps=3", "train.eval_every=2", "sample.n=1"]
with tempfile.TemporaryDirectory() as d:
    statuses = [train(load_config("debug", short), d + "/plain")["status"],
                train(load_config("debug", short + ["train.optimizer=muon"]), d + "/muon")["status"]]
    stack = [(asdict(load_config("debug", short + [f"train.seed={s}", f"name=stack{s}"])), f"{d}/stack{s}") for s in (0, 1)]
    out = train_task(stack, 1)
    statuses += [s["status"] for s in out.values()]
    stacked = [bool(s.get("stacked")) for s in out.values()]
print(json.dumps({"statuses": statuses, "stacked": stacked, "dynamo": "torch._dynamo" in sys.modules}))
"""


def test_an_eager_process_never_imports_dynamo(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["statuses"] == ["complete"] * 4 and got["stacked"] == [True, True]
    assert got["dynamo"] is False
