"""ngpt's table: a run that never reaches gpt's final val loss has no step count (it showed its budget, 40)."""
import math

from normlab.experiments import load_experiment
from normlab.report.runs import load_run

from runfixtures import decaying, write_run


def test_a_run_that_never_reaches_the_target_has_no_step_count(tmp_path):
    for s in range(3):
        write_run(tmp_path, "gpt", s, decaying(2.0, s, n=40), val=2.0)
        write_run(tmp_path, "ngpt", s, decaying(2.0, s, n=40), val=1.9 if s == 0 else 2.5)   # seed 0 reaches it
    groups = {v: [load_run(tmp_path / f"{v}-seed{s}") for s in range(3)] for v in ("gpt", "ngpt")}
    rows = {r.metric: r for r in load_experiment("ngpt").module("figures").rows(groups)}
    steps = rows["Steps to reach gpt's final val loss (same seed; the seeds that reached it)"].cells["ngpt"]
    assert steps.values == [40.0]                      # seed 0's eval at step 40; seeds 1, 2 never got there
    share = rows["Seeds that reached gpt's final val loss (share)"].cells
    assert math.isclose(share["ngpt"].mean, 1 / 3) and share["gpt"].mean == 1.0
