"""report/drawing.py: the figures drawn in forked children are the same bytes, in the same order, as drawn
one after another here; a job that raises fails the report with its own error."""
import os
import re
import subprocess
import sys

import matplotlib.pyplot as plt
import pytest

from normlab.experiments.spec import load_experiment
from normlab.report import build_report, drawing
from reportfixtures import write_probed_experiment


def _line(k):
    def job():
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1, 2], [k, k * k, 1])
        return {f"f{k}.png": (fig, f"caption {k}")} if k != 3 else {"three.png": ("a sentence", "c3")}
    return job


@pytest.mark.parametrize("processes", ["1", "2"])
def test_jobs_come_back_in_order_encoded(processes, monkeypatch):
    monkeypatch.setenv("NORMLAB_REPORT_PROCESSES", processes)
    open_before = plt.get_fignums()   # what other tests in this process left open is not draw()'s doing
    jobs = [_line(k) for k in range(6)]
    out, mine = drawing.draw(jobs, meanwhile=_line(9))
    assert [list(o) for o in out] == [["f0.png"], ["f1.png"], ["f2.png"], ["three.png"], ["f4.png"], ["f5.png"]]
    assert out[3]["three.png"] == ("a sentence", "c3")
    assert out[1]["f1.png"][0][:8] == b"\x89PNG\r\n\x1a\n" and out[1]["f1.png"][1] == "caption 1"
    assert list(mine) == ["f9.png"]
    serial, _ = drawing.draw(jobs) if processes == "1" else (None, None)
    if serial is not None:
        assert serial == out
    assert plt.get_fignums() == open_before


def test_a_failing_job_raises_its_error(monkeypatch):
    monkeypatch.setenv("NORMLAB_REPORT_PROCESSES", "2")

    def broken():
        raise ValueError("no such series")
    with pytest.raises(ValueError, match="no such series"):
        drawing.draw([_line(0), broken, _line(1), _line(2)])


@pytest.mark.parametrize("figures,most", [("all", 10), ("summary", 3)])
def test_a_report_is_byte_identical_drawn_in_parallel_or_not(tmp_path, monkeypatch, figures, most):
    write_probed_experiment(tmp_path / "prepost", "prepost", ["pre", "post", "none"], range(2),
                            seed_ref="003", preset=None, overrides=[])
    pngs = {}
    for processes in ("1", "2"):
        monkeypatch.setenv("NORMLAB_REPORT_PROCESSES", processes)
        build_report(tmp_path / "prepost", load_experiment("prepost"), figures)
        pngs[processes] = {p.name: p.read_bytes() for p in sorted((tmp_path / "prepost").glob("*.png"))}
        html = re.sub(r"Built \S+ from", "Built <time> from", (tmp_path / "prepost" / "report.html").read_text())
        for p in (tmp_path / "prepost").glob("*.png"):
            p.unlink()
        pngs[processes]["report.html"] = html.encode()
    assert len(pngs["1"]) > most and pngs["1"] == pngs["2"]


FORK_CHECK = """
import os, sys, threading
from normlab.report import drawing
me = str(os.getpid())
pid = lambda: {"pid": (str(os.getpid()), "c")}
def drawn_here():
    return {o["pid"][0] for o in drawing.draw([pid] * 4)[0]} == {me}
print(drawing.fork_is_safe(), drawn_here())
sys.modules["grpc"] = sys                      # as in a Ray driver or client
print(drawing.fork_is_safe(), drawn_here())
del sys.modules["grpc"]
threading.Thread(target=threading.Event().wait, daemon=True).start()   # another thread, as in a notebook kernel
print(drawing.fork_is_safe(), drawn_here())
"""


def test_children_draw_only_where_forking_is_safe():
    """A fresh process forks its drawing children; one with gRPC loaded or another thread draws in itself (a
    forked child can inherit a lock that another thread holds, and hang on it)."""
    run = subprocess.run([sys.executable, "-c", FORK_CHECK], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NORMLAB_REPORT_PROCESSES": "2"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "False", "False", "True", "False", "True"]


@pytest.mark.parametrize("bad", ["two", "0", "-1", "1.5"])
def test_a_bad_process_count_is_one_clear_line(bad, tmp_path):
    write_probed_experiment(tmp_path / "prepost", "prepost", ["pre", "post"], range(2), seed_ref="003", preset=None,
                            overrides=[])
    run = subprocess.run([sys.executable, "-m", "normlab", "report", str(tmp_path / "prepost")], capture_output=True,
                         text=True, env={**os.environ, "NORMLAB_REPORT_PROCESSES": bad})
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [f"error: NORMLAB_REPORT_PROCESSES={bad!r}: give a whole number of "
                                                "processes, at least 1 (1 draws the figures in this process)"]
