"""The Ray task's stop watcher (launchers/ray._watch_stop) without Ray: a stop flag read on a thread asks the
training loop for the checkpointed stop a first Ctrl-C gives, and Ray's own cancel landing after it is still
a first interrupt (a second one would abort the run before its checkpoint)."""
import json
import os
import signal
import threading

import normlab as nl
from normlab.experiments.launchers.ray import _watch_stop
from normlab.rundir import latest_checkpoint, read_metrics
from normlab.training import signals


def _losses(run_dir):
    return [m["loss"] for m in read_metrics(run_dir / "metrics.jsonl") if "loss" in m]


def test_a_flag_set_mid_run_stops_it_with_a_checkpoint_and_ray_s_cancel_after_it_is_no_abort(tiny, tmp_path):
    nl.train(tiny("name=full"))
    flag = threading.Event()

    def driver_stops_at_step_9(step, total):
        if step == 9:
            flag.set()                                 # the driver's Ctrl-C sets the flag ...
            assert signals._asked.wait(5), "the watcher never asked for the stop"
            os.kill(os.getpid(), signal.SIGINT)        # ... and Ray's cancel lands too: not a second Ctrl-C

    with _watch_stop(flag.is_set, every_s=0.01):
        summary = nl.train(tiny("name=cut"), progress=driver_stops_at_step_9)
    assert summary == {"status": "interrupted", "step": 9}
    assert latest_checkpoint(tmp_path / "cut") is not None
    assert json.loads((tmp_path / "cut" / "meta.json").read_text())["status"] == "interrupted"
    assert not signals._asked.is_set()                 # cleared: the worker's next task trains
    done = nl.train(tiny("name=cut"), resume=True)
    assert done["status"] == "complete"
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")


def test_a_stop_asked_before_the_first_step_trains_nothing(tiny, tmp_path):
    """A task whose worker was still starting when the stop landed: the loop never takes a step."""
    signals.request_stop()
    try:
        summary = nl.train(tiny("name=late"))
    finally:
        signals.clear_stop_request()
    assert summary == {"status": "interrupted", "step": 0}
    assert _losses(tmp_path / "late") == []


def test_a_flag_that_cannot_be_read_ends_the_watch_quietly(tiny, tmp_path):
    """The driver gone (its flag actor with it): Ray ends the task itself; the watcher must not raise or stop it."""
    def gone():
        raise ConnectionError("actor died")

    with _watch_stop(gone, every_s=0.01):
        summary = nl.train(tiny("name=goes_on"))
    assert summary["status"] == "complete"
