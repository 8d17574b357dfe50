"""The sweep's parent and each worker talk through that worker's own two pipes (runner.Sweep, runner._Outbox):
a worker killed mid-message fails only the task it held, one killed before its first task is replaced (a few times),
and progress is sent a few times a second, not every step. The workers here are stand-ins (module functions the spawned child imports), so no model trains."""
import os
import signal
import struct
import time
from types import SimpleNamespace

from normlab.experiments import runner


def _task(name: str):
    return SimpleNamespace(runs=[SimpleNamespace(cfg=SimpleNamespace(name=name))], threads=1,
                           payload=lambda: [(name, "unused")])


def _stand_in(index, inbox, outbox, parent, reuse=True):
    """Worker 0 takes a task and dies halfway through writing a message (a length header for 1,000 bytes, then
    10); the replacement trains every task it is handed and says goodbye."""
    if index == 0:
        outbox.send(("ready", index, None))
        inbox.recv()
        os.write(outbox.fileno(), struct.pack("!i", 1000) + b"x" * 10)
        os._exit(9)
    _trains(index, inbox, outbox)


def _killed_at_start(index, inbox, outbox, parent, reuse=True):
    """The first NORMLAB_TEST_KILLED workers are killed before they ask for a task (the OOM killer while torch
    loads); the others train."""
    if index < int(os.environ["NORMLAB_TEST_KILLED"]):
        os.kill(os.getpid(), signal.SIGKILL)
    _trains(index, inbox, outbox)


def _trains(index, inbox, outbox):
    while True:
        outbox.send(("ready", index, None))
        item = inbox.recv()
        if item is None:
            break
        payload, threads = item   # a task comes with its thread count
        for name, _ in payload:
            outbox.send(("done", name, {"status": "complete"}))
    outbox.send(("exit", index, None))


def test_a_worker_killed_mid_message_fails_its_task_and_a_replacement_trains_the_rest(monkeypatch):
    monkeypatch.setattr(runner, "_worker", _stand_in)
    echoed = []
    sweep = runner.Sweep([_task("a"), _task("b"), _task("c")], jobs=1, on_done=lambda n, s: echoed.append(n))
    t0 = time.monotonic()
    results = sweep.run()
    assert results == {"a": {"status": "failed", "error": "worker exited with code 9"},
                       "b": {"status": "complete"}, "c": {"status": "complete"}}
    assert echoed == ["a", "b", "c"] and not sweep._workers and time.monotonic() - t0 < 120


def test_a_worker_killed_before_its_first_task_is_replaced_a_few_times(monkeypatch):
    monkeypatch.setattr(runner, "_worker", _killed_at_start)
    monkeypatch.setattr(runner, "MAX_EARLY_KILLS", 1)   # the parent's count (3 in a real sweep): fewer spawns here
    monkeypatch.setenv("NORMLAB_TEST_KILLED", "1")
    results = runner.Sweep([_task("a"), _task("b")], jobs=1).run()
    assert results == {"a": {"status": "complete"}, "b": {"status": "complete"}}
    monkeypatch.setenv("NORMLAB_TEST_KILLED", "2")   # the replacement too: the sweep ends, saying what happened
    results = runner.Sweep([_task("a"), _task("b")], jobs=1).run()
    assert {r["status"] for r in results.values()} == {"failed"} and set(results) == {"a", "b"}
    assert results["a"]["error"].startswith("no worker could start: each was killed (signal 9) before taking a task")


class _Recorder:
    def __init__(self):
        self.sent, self.closed = [], False

    def send(self, message):
        self.sent.append(message)

    def close(self):
        self.closed = True


def test_progress_goes_out_a_few_times_a_second_and_always_the_last_step():
    conn = _Recorder()
    out = runner._Outbox(conn)
    t0 = time.monotonic()
    for step in range(1, 2001):
        out.progress("a", step, 2000)
        out.progress("b", step, 2000)
    elapsed = time.monotonic() - t0
    out.close(("exit", 0, None))
    steps = {name: [m[2] for m in conn.sent if m[0] == "progress" and m[1] == name] for name in "ab"}
    assert all(s[0] == 1 and s[-1] == 2000 and len(s) <= 2 + elapsed / runner.PROGRESS_EVERY_S
               for s in steps.values()), steps
    assert conn.sent[-1] == ("exit", 0, None) and conn.closed
