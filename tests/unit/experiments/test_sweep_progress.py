"""normlab run's live progress (experiments/progress.py): rows per task, the loss from metrics.jsonl's tail, periodic
lines for a log and a rich table for a terminal (issue 27)."""
import io
import json
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from normlab.experiments.progress import SweepProgress, last_loss
from normlab.experiments.runner import Task


def _run(tmp_path: Path, name: str, steps: int = 4000):
    cfg = SimpleNamespace(name=name, train=SimpleNamespace(steps=steps))
    return SimpleNamespace(cfg=cfg, run_dir=tmp_path / name, variant=name.split("-")[0])


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _tasks(tmp_path):
    pre = [_run(tmp_path, f"pre-seed{i}") for i in range(2)]
    return [Task(pre), Task([_run(tmp_path, "post-seed0")])]


def test_last_loss_reads_the_last_step_record(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    assert last_loss(metrics) is None
    metrics.write_text("\n".join(json.dumps(r) for r in [{"step": 0, "loss": 3.0}, {"step": 1, "loss": 2.5},
                                                           {"step": 1, "val_loss": 2.9}]) + "\n")
    assert last_loss(metrics) == 2.5


def test_log_lines_come_with_the_first_step_then_every_period(tmp_path):
    clock, lines = Clock(), []
    shown = SweepProgress(_tasks(tmp_path), "lines", write=lines.append, every_s=10, clock=clock)
    for i in range(2):
        (tmp_path / f"pre-seed{i}").mkdir()
        (tmp_path / f"pre-seed{i}" / "metrics.jsonl").write_text(json.dumps({"step": 49, "loss": 2.0 + i}) + "\n")
    clock.t += 3
    shown.progress("pre-seed0", 1, 4000)
    assert len(lines) == 1 and "pre x2 step 0/4000" in lines[0]   # a stack is as far as its slowest member
    clock.t += 2
    shown.progress("pre-seed0", 50, 4000)
    shown.progress("pre-seed1", 50, 4000)
    assert len(lines) == 1                                          # not before the period is over
    clock.t += 9
    shown.progress("pre-seed1", 100, 4000)
    shown.progress("pre-seed0", 100, 4000)
    assert len(lines) == 2
    line = lines[1]
    assert "pre x2 step 50/4000" in line and "loss 2.5000" in line   # the mean of the members' last losses
    assert "eta 0:14:29" in line         # the stack went 0 -> 50 in 11 s: 3950 steps to go take 869 s
    assert "0/3 runs ended, 1 task(s) waiting" in line
    shown.done("post-seed0", {"status": "failed"})
    clock.t += 10
    shown.progress("pre-seed0", 200, 4000)
    assert "1/3 runs ended (1 failed)" in lines[-1] and "post-seed0" not in lines[-1]   # ended tasks: counted


def test_a_line_names_at_most_six_training_tasks(tmp_path):
    tasks = [Task([_run(tmp_path, f"v{i}-seed0")]) for i in range(9)]
    lines = []
    shown = SweepProgress(tasks, "lines", write=lines.append, clock=Clock())
    for i in range(9):
        shown.progress(f"v{i}-seed0", 5, 4000)
    assert len(lines) == 1 and shown.line().count(" step ") == 6 and "3 more training" in shown.line()


def test_terminal_table_fits_and_names_every_task(tmp_path):
    clock = Clock()
    shown = SweepProgress(_tasks(tmp_path), "bar", clock=clock)
    shown.progress("post-seed0", 25, 4000)
    clock.t += 5
    shown.progress("post-seed0", 75, 4000)
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(shown.table())
    text = out.getvalue()
    assert "0/3 runs ended" in text
    rows = {" ".join(line.split()[:2]): line for line in text.splitlines() if line.startswith(("pre", "post"))}
    assert "75/4000" in rows["post-seed0 1"] and "training" in rows["post-seed0 1"] and "0:06:" in rows["post-seed0 1"]
    assert "0/4000" in rows["pre x2"] and "waiting" in rows["pre x2"]
    assert max(len(line) for line in text.splitlines()) <= 120


def test_split_stacks_get_distinct_labels(tmp_path):
    a = Task([_run(tmp_path, f"pre-seed{i}") for i in range(3)])
    b = Task([_run(tmp_path, f"pre-seed{i}") for i in range(3, 6)])
    shown = SweepProgress([a, b], "none")
    assert [r.label for r in shown.rows] == ["pre x3 #1", "pre x3 #2"]


def test_a_terminal_table_shows_training_tasks_first_and_folds_the_rest(tmp_path):
    tasks = [Task([_run(tmp_path, f"v{i}-seed0")]) for i in range(20)]
    shown = SweepProgress(tasks, "bar", clock=Clock())
    shown.progress("v19-seed0", 5, 4000)
    shown.done("v0-seed0", {"status": "complete"})
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(shown.table())
    rows = [line for line in out.getvalue().splitlines() if line.startswith(("v", "+"))]
    assert rows[0].startswith("v19-seed0 ") and "training" in rows[0] and len(rows) == 13
    assert rows[-1].startswith("+8 more") and "7 waiting, 1 complete" in rows[-1]
