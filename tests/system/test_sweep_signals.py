"""Sweeps that stop and resume cleanly, in real processes: `normlab run` and `normlab train` under signals.

- first SIGINT (and SIGTERM): every running worker stops at its next step boundary and checkpoints, the
  parent prints how to resume and exits 130, with no "leaked semaphore" warning; a second SIGINT exits at once;
- kill -9 of the parent leaves no worker alive (their pids are read from the run directories' .lock files);
- a re-run trains only what is missing and gives the same results.json claims (and metrics) as an
  uninterrupted sweep; a run whose summary says `failed` is retried, and kept with --skip-failed;
- `normlab train`: Ctrl-C exits 130; a second writer on the locked run directory is refused with the pid;
- one worker process takes task after task (meta.json pid); --no-stack keeps one process per run;
- a changed train.steps never extends a finished run: its own folder (an override), or a refusal naming
  the key (the experiment file itself edited).
Sweep: prepost, one seed, three runs, two workers; 200 steps with a checkpoint every 20.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from oneline import changed, invoke, refused, snapshot
from tinyruns import TINY_EXPERIMENT

SWEEP = ["--seeds", "1", "--jobs", "2", "train.steps=200", "train.ckpt_every=20", "train.eval_every=100",
         "train.eval_batches=2", "sample.n=2"]
RUNS = ("pre-seed0", "post-seed0", "none-seed0")


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "NORMLAB_DEBUG"}


def _start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "normlab", *map(str, args)], cwd=cwd, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _sweep(out: Path, *extra) -> subprocess.Popen:
    return _start(["run", "prepost", *SWEEP, "--out", out, *extra], out.parent)


def _exp(out: Path) -> Path:
    [exp] = out.glob("prepost-*")
    return exp


def _wait(cond, proc, what, timeout=300.0):
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {what}: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _training(out: Path, n: int = 2, lines: int = 40):
    """True once n runs have a worker writing their metrics (past `lines` lines)."""
    def cond():
        exps = list(out.glob("prepost-*"))
        return bool(exps) and sum(_lines(exps[0] / r / "metrics.jsonl") >= lines for r in RUNS) >= n
    return cond


def _worker_pids(exp: Path) -> list[int]:
    pids = []
    for r in RUNS:
        lock = exp / r / ".lock"
        if lock.exists() and lock.read_text().strip().isdigit():
            pids.append(int(lock.read_text()))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"   # a zombie has ended; only its exit status is left for the reaper


def _claims(exp: Path) -> list[dict]:
    return json.loads((exp / "results.json").read_text())["claims"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "out"
    out.mkdir()
    p = _sweep(out)
    stdout, stderr = p.communicate(timeout=900)
    assert p.returncode == 0, stderr
    return _exp(out)


def _interrupt(out: Path, sig) -> tuple[subprocess.Popen, str, str]:
    p = _sweep(out)
    _wait(_training(out), p, "two workers training")
    os.kill(p.pid, sig)
    stdout, stderr = p.communicate(timeout=300)
    return p, stdout, stderr


def _stopped_cleanly(exp: Path, stdout: str, stderr: str, code: int) -> dict[str, int]:
    """{run: the step it stopped at} for the runs the signal stopped: each with a checkpoint there, no summary,
    meta status interrupted, metrics.jsonl holding exactly the lines that checkpoint counts."""
    assert code == 130, stderr
    assert "continue with: normlab run prepost" in stdout, stdout
    assert "leaked semaphore" not in stderr and "Traceback" not in stderr, stderr
    stopped = {}
    for r in RUNS:
        if (exp / r / "meta.json").exists() and json.loads((exp / r / "meta.json").read_text())["status"] == "interrupted":
            stopped[r] = int((exp / r / "checkpoints" / "latest").read_text().strip()[5:])
    assert len(stopped) == 2, stopped   # both workers were mid-run
    for r, step in stopped.items():
        assert not (exp / r / "summary.json").exists()
        state = json.loads((exp / r / "checkpoints" / f"step_{step:06d}" / "state.json").read_text())
        assert 0 < step < 200 and state["step"] == step
        assert _lines(exp / r / "metrics.jsonl") == state["metrics_lines"]  # stopped at that step boundary
    return stopped


def test_first_sigint_checkpoints_then_a_rerun_finishes_only_what_is_missing(reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    p, stdout, stderr = _interrupt(out, signal.SIGINT)
    exp = _exp(out)
    stopped = _stopped_cleanly(exp, stdout, stderr, p.returncode)
    [untouched] = [r for r in RUNS if r not in stopped]
    assert not (exp / untouched / "metrics.jsonl").exists()                    # never started
    p = _sweep(out)
    stdout, stderr = p.communicate(timeout=900)
    assert p.returncode == 0, stderr
    assert "(3 to train, 0 finished already;" in stdout
    for r in RUNS:
        assert (exp / r / "metrics.jsonl").read_bytes() == (reference / r / "metrics.jsonl").read_bytes(), r
        meta = json.loads((exp / r / "meta.json").read_text())
        assert meta["status"] == "complete" and meta.get("resumed_at_step") == stopped.get(r), (r, meta)
    assert _claims(exp) == _claims(reference) and len(_claims(exp)) > 0


@pytest.mark.slow
def test_sigterm_is_a_first_sigint(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    p, stdout, stderr = _interrupt(out, signal.SIGTERM)
    _stopped_cleanly(_exp(out), stdout, stderr, p.returncode)


@pytest.mark.slow
def test_a_second_sigint_exits_at_once_and_kills_the_workers(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    p = _sweep(out)
    _wait(_training(out), p, "two workers training")
    pids = _worker_pids(_exp(out))
    os.kill(p.pid, signal.SIGINT)
    time.sleep(0.05)
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode == 130 and time.monotonic() - t0 < 10
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids and not any(_alive(pid) for pid in pids)


def test_kill_9_of_the_parent_leaves_no_worker_alive(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    p = _sweep(out, "train.steps=5000")   # killed early; long enough that no worker ends first on a fast machine
    _wait(_training(out, lines=10), p, "two workers training")
    pids = _worker_pids(_exp(out))
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids), "an orphaned worker is still training"


def test_failed_runs_are_retried_unless_skip_failed(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference.parent, out)
    exp = _exp(out)
    failed = {"name": "post-seed0", "status": "failed", "error": "RuntimeError: the machine went away"}
    (exp / "post-seed0" / "summary.json").write_text(json.dumps(failed))
    kept = snapshot(exp / "post-seed0")
    p = _sweep(out, "--skip-failed")
    stdout, stderr = p.communicate(timeout=900)
    assert p.returncode == 0, stderr
    assert "(0 to train, 2 finished already;" in stdout and "1 failed kept (--skip-failed))" in stdout
    assert changed(kept, snapshot(exp / "post-seed0")) == []
    p = _sweep(out)
    stdout, stderr = p.communicate(timeout=900)
    assert p.returncode == 0, stderr
    assert "(1 to train, 2 finished already;" in stdout and "post-seed0: complete" in stdout
    summary = json.loads((exp / "post-seed0" / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["val_loss"] == json.loads((reference / "post-seed0" / "summary.json").read_text())["val_loss"]
    assert (exp / "post-seed0" / "metrics.jsonl").read_bytes() == (reference / "post-seed0" / "metrics.jsonl").read_bytes()
    assert _claims(exp) == _claims(reference)


def test_train_ctrl_c_exits_130_and_a_second_writer_is_refused_with_the_pid(tmp_path):
    p = _start(["train", "debug", f"out_dir={tmp_path}", "name=long", "train.steps=100000", "train.ckpt_every=0",
                "probes.every=0"], tmp_path)
    run = tmp_path / "long"
    _wait(lambda: _lines(run / "metrics.jsonl") >= 20, p, "training")
    assert (run / ".lock").read_text().strip() == str(p.pid)
    before = snapshot(run / "checkpoints")
    line = refused(invoke("train", "debug", f"out_dir={tmp_path}", "name=long", "train.steps=100000",
                          "train.ckpt_every=0", "probes.every=0", "--resume"), "being written by another", str(p.pid))
    assert f"pid {p.pid}" in line
    assert snapshot(run / "checkpoints") == before
    os.kill(p.pid, signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr
    assert "continue with: normlab train debug" in stdout and "--resume" in stdout
    step = int((run / "checkpoints" / "latest").read_text().strip()[5:])
    assert 20 <= step < 100000 and json.loads((run / "meta.json").read_text())["status"] == "interrupted"


def test_a_changed_train_steps_never_extends_a_finished_run(reference, tmp_path):
    from normlab.experiments import expand, load_experiment

    spec = load_experiment("prepost")
    out = reference.parent
    again = expand(spec, [o for o in SWEEP if "=" in o and not o.startswith("train.steps")] + ["train.steps=500"],
                   seeds=[0], out_dir=str(out))
    assert again[0].run_dir.parent != reference                                 # an override: its own folder
    assert {p.run_dir.parent for p in again} == {again[0].run_dir.parent} and not again[0].run_dir.parent.exists()

    yaml_path = tmp_path / "tiny" / "experiment.yaml"                           # the experiment itself edited
    yaml_path.parent.mkdir()
    yaml_path.write_text(yaml.safe_dump(TINY_EXPERIMENT))
    assert invoke("run", yaml_path, "--out", tmp_path / "out").exit_code == 0
    finished = snapshot(tmp_path / "out")
    edited = {**TINY_EXPERIMENT, "base": {**TINY_EXPERIMENT["base"],
                                         "train": {**TINY_EXPERIMENT["base"]["train"], "steps": 12}}}
    yaml_path.write_text(yaml.safe_dump(edited))
    refused(invoke("run", yaml_path, "--out", tmp_path / "out"), "train.steps: 6 -> 12", "a-seed0")
    assert changed(finished, snapshot(tmp_path / "out")) == []


@pytest.mark.parametrize("stack", [pytest.param(True, id="one-worker-many-tasks"),
                                   pytest.param(False, id="no-stack-one-process-per-run", marks=pytest.mark.slow)])
def test_a_worker_takes_task_after_task_unless_no_stack(tmp_path, stack):
    """By default one worker process trains the three placement tasks one after another (torch is imported
    once); --no-stack keeps one fresh process per run. meta.json records the pid that trained it."""
    out = tmp_path / "out"
    out.mkdir()
    p = _start(["run", "prepost", "--seeds", "1", "--jobs", "1", "train.steps=20", "train.eval_every=10",
                "sample.n=1", "--out", out] + ([] if stack else ["--no-stack"]), out.parent)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    exp = _exp(out)
    pids = {r: json.loads((exp / r / "meta.json").read_text())["pid"]
            for r in ("pre-seed0", "post-seed0", "none-seed0")}
    assert len(set(pids.values())) == (1 if stack else 3), pids
    assert p.pid not in pids.values()


def test_a_killed_worker_fails_its_task_and_a_replacement_trains_the_rest(tmp_path):
    """kill -9 of the one worker while it trains the first task: that task's run is recorded failed (exit 1),
    a fresh worker trains the two tasks no one started, and a re-run retries the failed one."""
    out = tmp_path / "out"
    out.mkdir()
    args = ["run", "prepost", "--seeds", "1", "--jobs", "1", "train.ckpt_every=20", "train.eval_every=100",
            "train.eval_batches=2", "sample.n=1", "--out", out]
    p = _start(args + ["train.steps=120"], out.parent)   # the kill lands ~10 steps into the first run
    _wait(_training(out, n=1, lines=10), p, "the worker training")
    [victim] = _worker_pids(_exp(out))
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 1, stderr
    states = {r: json.loads((_exp(out) / r / "summary.json").read_text())["status"]
              if (_exp(out) / r / "summary.json").exists() else None for r in RUNS}
    assert sorted(states.values(), key=str) == [None, "complete", "complete"], (states, stdout)
    assert "worker exited with code -9" in stdout + stderr, (stdout, stderr)
    pids = {json.loads((_exp(out) / r / "meta.json").read_text())["pid"] for r in RUNS if states[r]}
    assert len(pids) == 1 and victim not in pids
    p = _start(args + ["train.steps=120"], out.parent)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0 and "(1 to train, 2 finished already;" in stdout, (stdout, stderr)
    assert all(json.loads((_exp(out) / r / "summary.json").read_text())["status"] == "complete" for r in RUNS)


def test_workers_that_cannot_start_fail_their_tasks_instead_of_being_replaced_forever(tmp_path):
    """A sweep started from `python -` (stdin): each spawned worker re-imports the main script, which does not
    exist, and dies before taking a task. The sweep used to replace it, forever; now the tasks fail, saying why."""
    code = ("from normlab.experiments.run import run_experiment\n"
            f"run_experiment('prepost', ['train.steps=5', 'probes.every=0'], seeds=1, jobs=1, out={str(tmp_path)!r}, "
            "echo=print)\n")
    p = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = p.stdout + p.stderr
    assert out.count("no worker could start: each exited (code 1) before taking a task") == 1, out  # said once
    assert out.count("failed (the same error as ") == 2, out                                        # then named
    assert "under `if __name__ == '__main__':`" in out


TRACE_FREES = '''
import atexit, sys, threading, time

def report():
    time.sleep(0.5)   # a daemon thread's late free would land by now
    print("freed in:", " ".join(sorted(set(freed))), file=sys.stderr)

if __name__ == "__main__":   # the parent (each spawned worker runs this file too, as __mp_main__)
    atexit.register(report)   # before multiprocessing's own exit hook: atexit runs last-in first-out
import multiprocessing.synchronize as sync

freed = []
cleanup = sync.SemLock._cleanup

def traced(name):
    freed.append(threading.current_thread().name)
    cleanup(name)

sync.SemLock._cleanup = staticmethod(traced)
if __name__ == "__main__":
    from normlab.cli import main
    main()
'''


def test_the_parent_frees_its_semaphores_in_its_main_thread(tmp_path):
    """A semaphore that a daemon thread frees (a multiprocessing.Queue's feeder drops the last reference to two)
    can be stopped by the interpreter's exit between being unlinked and being unregistered with the resource
    tracker, which then warns of a "leaked semaphore" (CI saw it after a Ctrl-C'd sweep). The parent of a sweep frees
    any it owns in its main thread (it owns none now: its workers talk to it through pipes)."""
    spec = tmp_path / "tiny" / "experiment.yaml"
    spec.parent.mkdir()
    spec.write_text(yaml.safe_dump({**TINY_EXPERIMENT, "seeds": 2, "jobs": 2}))
    script = tmp_path / "traced.py"
    script.write_text(TRACE_FREES)
    p = subprocess.run([sys.executable, str(script), "run", str(spec), "--no-stack", "--out", str(tmp_path / "out")],
                       cwd=tmp_path, env=_env(), text=True, capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr
    [line] = [x for x in p.stderr.splitlines() if x.startswith("freed in:")]
    assert set(line.split(":", 1)[1].split()) <= {"MainThread"}, p.stderr
