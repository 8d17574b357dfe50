"""The Ray launcher (experiments/launchers/ray.py).

Fast tests (default suite) check the task body and the CLI without Ray. The `ray`-marked tests start a
real 3-node Ray cluster on this machine (head + 2 workers, 1 CPU each; `.ci/run` runs `pytest -m ray`
after `make test`): a sweep that loses a worker node mid-run equals a local sweep byte for byte, and
Ctrl-C stops it with a checkpoint and exit code 130. Everything Ray writes goes to a private temp dir and
every Ray process is gone after the tests, even when one fails.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from normlab.cli import main
from normlab.experiments import runner
from normlab.experiments.launchers import ray as ray_launcher
from normlab.rundir import RunLock, write_json
from normlab.training.loop import WALL_CLOCK_KEYS

SWEEP = ["prepost", "--seeds", "2", "train.steps=200", "train.ckpt_every=20"]


def _payload(tmp_path, *names):
    exp = tmp_path / "exp"
    exp.mkdir(exist_ok=True)
    return [({"train": {"device": "cpu"}}, str(exp / n)) for n in names]


def test_a_retried_task_skips_finished_runs_and_trains_the_rest(tmp_path, monkeypatch):
    payload = _payload(tmp_path, "a", "b", "c")
    write_json(Path(payload[0][1]) / "summary.json", {"name": "a", "status": "complete", "val_loss": 1.5})
    write_json(Path(payload[1][1]) / "summary.json", {"name": "b", "status": "failed", "error": "x"})
    calls, sent = [], []

    def fake_train_task(runs, threads, progress=None, on_done=None):
        calls.append(([Path(d).name for _, d in runs], threads))
        progress("b", 25, 200)
        on_done("b", {"status": "complete"})
        return {Path(d).name: {"status": "complete"} for _, d in runs}
    monkeypatch.setattr(runner, "train_task", fake_train_task)
    out = ray_launcher.run_task(payload, 3, sent.append, where="node-x")
    assert calls == [(["b", "c"], 3)]  # a finished: not trained again; b failed: retried
    assert out["a"] == {"name": "a", "status": "complete", "val_loss": 1.5}
    assert sent[0] == ("start", ["b", "c"], "node-x")
    assert ("progress", "b", 25, 200) in sent and ("done", "b", {"status": "complete"}) in sent


def test_a_node_without_the_shared_out_fails_the_run_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "train_task", lambda *a, **k: pytest.fail("must not train"))
    payload = [({"train": {"device": "cpu"}}, str(tmp_path / "not-mounted" / "a"))]
    sent = []
    out = ray_launcher.run_task(payload, 1, sent.append, where="10.0.0.7")
    assert out["a"]["status"] == "failed"
    assert "does not exist on node 10.0.0.7" in out["a"]["error"] and "every node" in out["a"]["error"]
    assert sent == [("done", "a", out["a"])]
    assert not (tmp_path / "not-mounted").exists()


def test_wait_for_lock_waits_for_the_holder_then_gives_up(tmp_path):
    run_dir = tmp_path / "r"
    with RunLock(run_dir):  # another open file description: flock conflicts within one process too
        t0 = time.monotonic()
        ray_launcher.wait_for_lock(run_dir, timeout_s=0.3)
        assert 0.25 <= time.monotonic() - t0 < 2.0
    t0 = time.monotonic()
    ray_launcher.wait_for_lock(run_dir, timeout_s=30)
    assert time.monotonic() - t0 < 0.5


def test_gpu_request_follows_the_runs_device():
    cpu, cuda, auto = ({"train": {"device": d}} for d in ("cpu", "cuda", "auto"))
    assert ray_launcher.needs_gpu([(cuda, "x")], 0) and ray_launcher.needs_gpu([(cpu, "x"), (cuda, "y")], 4)
    assert not ray_launcher.needs_gpu([(cpu, "x")], 4)
    assert ray_launcher.needs_gpu([(auto, "x")], 1) and not ray_launcher.needs_gpu([(auto, "x")], 0)


def test_stacks_are_split_to_fill_the_slots_the_cluster_runs_at_once():
    """A Ray sweep plans its stacks whole (the driver does not know the cluster yet), then splits them for the
    cluster's CPUs (GPUs where the runs train on CUDA), at most --jobs, as the local launcher does for its workers."""
    from normlab.experiments import expand, load_experiment

    prepost = expand(load_experiment("prepost"))                     # 3 placements x 5 seeds
    whole, _ = runner.plan_tasks(prepost)
    assert sorted(len(t.runs) for t in whole) == [5, 5, 5]
    assert ray_launcher.slots({"CPU": 2.0}, whole, None) == 2
    split = runner.balanced(whole, ray_launcher.slots({"CPU": 2.0}, whole, None))
    local, _ = runner.plan_tasks(prepost, workers=2)
    assert [[r.cfg.name for r in t.runs] for t in split] == [[r.cfg.name for r in t.runs] for t in local]
    assert ray_launcher.slots({"CPU": 16.0}, whole, 2) == 2                  # --jobs caps what runs at once
    for t in whole:
        t.threads = 4
    assert ray_launcher.slots({"CPU": 16.0}, whole, None) == 4               # a task holds its threads' CPUs
    cuda = runner.plan_tasks(expand(load_experiment("prepost"), ["train.device=cuda"]))[0]
    assert ray_launcher.slots({"CPU": 16.0, "GPU": 1.0}, cuda, None) == 1    # one GPU: the stacks stay whole
    assert ray_launcher.slots({"CPU": 16.0, "GPU": 1.0}, whole, None) == 1    # device auto takes the GPU there
    cpu = runner.plan_tasks(expand(load_experiment("prepost"), ["train.device=cpu"]))[0]
    assert ray_launcher.slots({"CPU": 16.0, "GPU": 1.0}, cpu, None) == 16     # CPU runs do not wait for it
    assert ray_launcher.slots({}, whole, None) == 1


def test_cli_launcher_errors_are_one_line_exit_2(tmp_path, monkeypatch):
    r = CliRunner().invoke(main, ["run", "prepost", "--address", "auto", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "needs --launcher ray" in r.output and len(r.output.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    r = CliRunner().invoke(main, ["run", "prepost", "--launcher", "ray", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "pip install 'normlab[ray]'" in r.output
    assert not any(tmp_path.iterdir())  # refused before planning wrote anything


# ---- a real Ray cluster (pytest -m ray) ----

def _ray_or_fail():
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed in CI; .ci/run installs normlab[ray] before pytest -m ray")
        pytest.skip("ray is not installed (pip install 'normlab[ray]')")


@pytest.mark.ray
def test_a_bad_address_is_refused_in_seconds_before_anything_is_written(tmp_path, monkeypatch):
    _ray_or_fail()
    import ray._private.ray_constants as ray_constants

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # 127.0.0.1 stays 127.0.0.1
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))  # no `ray start` recorded there
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    cases = {"auto": "no Ray cluster was started on this machine", f"127.0.0.1:{free}": "no Ray cluster answers at",
             "nonsense": "expected auto or host:port", "ray://head:10001": "Ray Client is not supported"}
    for address, words in cases.items():
        t0 = time.monotonic()
        r = CliRunner().invoke(main, ["run", "prepost", "--launcher", "ray", "--address", address,
                                      "--out", str(tmp_path / "out")])
        assert r.exit_code == 2 and words in r.output and len(r.output.strip().splitlines()) == 1, r.output
        print(address, round(time.monotonic() - t0, 2), "s")
        assert time.monotonic() - t0 < 15
    assert not (tmp_path / "out").exists()


def _processes_with(marker: str) -> list[int]:
    """Ray's pids whose environment carries `marker`: every process of the test's cluster, orphans included
    (not multiprocessing's resource tracker, which the local sweep leaves to this pytest process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes() and _is_ray(_cmdline(int(entry.name))):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster():
    _ray_or_fail()
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    marker = f"normlab-ray-test-{uuid.uuid4().hex}"
    tmp = tempfile.mkdtemp(prefix="nlray", dir="/tmp")  # short: Ray's socket paths live under it
    env = {"RAY_TMPDIR": tmp, "NORMLAB_RAY_TEST": marker,
           # Keep Ray on 127.0.0.1: otherwise it advertises the machine's outward address
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        node = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}
        c = None
        try:
            c = Cluster(initialize_head=True, head_node_args={
                **node, "include_dashboard": False,
                "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                                   "health_check_failure_threshold": 3}})
            for _ in range(2):
                c.add_node(**node)
            c.wait_for_nodes()
            c.env = dict(os.environ)
            yield c
        finally:
            if c is not None:
                c.shutdown()
            deadline = time.monotonic() + 20
            while (left := [p for p in _processes_with(marker) if _alive(p)]) and time.monotonic() < deadline:
                time.sleep(0.2)
            names = {pid: _cmdline(pid) for pid in left}
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(tmp, ignore_errors=True)
            assert not left, f"processes left behind after the cluster was shut down: {names}"


def _is_ray(cmdline: str) -> bool:  # raylet, gcs_server, workers (ray::...), agents, log monitor
    return cmdline.startswith("ray::") or "/site-packages/ray/" in cmdline


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def _normlab(cluster, *args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "normlab", "run", *args, "--launcher", "ray", "--address", cluster.address]
    return subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*"))


def _writer(run_dir: Path) -> int | None:
    """The live pid holding the run's lock (RunLock writes it), if any."""
    try:
        pid = int((run_dir / ".lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _lock_held(run_dir: Path) -> bool:
    """Whether a second writer would be refused now (RunLock, as train() takes it). The pid in .lock is only who
    took it last: a Ray worker that released it stays alive in Ray's pool, or exits a moment later."""
    from normlab.config import ConfigError

    try:
        with RunLock(run_dir):
            return False
    except ConfigError:
        return True


def _kill_a_node_training_past(cluster, root: Path, step: int, total: int, done: threading.Event, lost: dict):
    """Remove (kill -9) the first worker node whose Ray worker trains a run past `step` (a checkpoint)."""
    raylets = {n.all_processes["raylet"][0].process.pid: n for n in cluster.worker_nodes}
    while not done.is_set():
        for lock in root.glob("*/*/.lock"):
            run_dir = lock.parent
            pid = _writer(run_dir)
            steps = _steps(run_dir)
            if pid is None or _ppid(pid) not in raylets or not steps or not step <= steps[-1] < total \
                    or (run_dir / "summary.json").exists():
                continue
            cluster.remove_node(raylets[_ppid(pid)], allow_graceful=False)
            lost.update(run=run_dir.name, step=steps[-1], pid=pid)
            return
        time.sleep(0.05)


@pytest.mark.ray
def test_a_sweep_that_loses_a_node_equals_a_local_sweep(cluster, tmp_path, monkeypatch):
    from normlab.experiments import run as run_module

    monkeypatch.setattr(run_module, "workers_and_threads", lambda jobs, n: (max(1, min(jobs, n)), 1))  # as Ray tasks
    local = run_module.run_experiment(SWEEP[0], SWEEP[3:], seeds=2, jobs=2, out=str(tmp_path / "local"),
                                      echo=lambda line: None)
    done, lost = threading.Event(), {}
    killer = threading.Thread(target=_kill_a_node_training_past, args=(cluster, tmp_path / "ray", 20, 200, done, lost))
    killer.start()
    try:
        proc = _normlab(cluster, *SWEEP, "--out", str(tmp_path / "ray"))
        out, _ = proc.communicate(timeout=420)
    finally:
        done.set()
        killer.join()
    print(out)  # pytest -rP shows the sweep's own lines
    assert proc.returncode == 0, out
    assert lost, f"no run was training on a worker node past its first checkpoint:\n{out}"
    assert not _alive(lost["pid"]), "the lost node's worker is still running"
    ray_dir = tmp_path / "ray" / local.exp_dir.name
    assert re.search(rf"{lost['run']}: restarted on .*attempt 2", out), out
    meta = json.loads((ray_dir / lost["run"] / "meta.json").read_text())
    assert lost["step"] <= meta["resumed_at_step"] < 200 and meta["resumed_at_step"] % 20 == 0, meta
    runs = sorted(p.name for p in local.exp_dir.iterdir() if (p / "config.yaml").exists())
    assert len(runs) == 6
    for name in runs:
        assert f"{name}: complete, val loss" in out
        assert json.loads((ray_dir / name / "summary.json").read_text())["status"] == "complete"
        for rel in ("metrics.jsonl", "checkpoints/step_000200/model.safetensors", "samples.txt"):
            assert (ray_dir / name / rel).read_bytes() == (local.exp_dir / name / rel).read_bytes(), (name, rel)
    (ray_results, ray_md), (local_results, local_md) = _report(ray_dir), _report(local.exp_dir)
    # the same report, but for when it was built; a diff names what differs
    assert ray_md == local_md, "".join(difflib.unified_diff(local_md.splitlines(True), ray_md.splitlines(True),
                                                             "local/report.md", "ray/report.md"))
    assert ray_results == local_results, "".join(difflib.unified_diff(
        _lines(local_results), _lines(ray_results), "local/results.json", "ray/results.json"))


WALL_CLOCK = ("built", "stacked", *WALL_CLOCK_KEYS)  # stacked: how many trained together (provenance)


def _lines(value) -> list[str]:
    return json.dumps(value, indent=1, sort_keys=True).splitlines(True)


def _report(exp_dir: Path) -> tuple[dict, str]:
    def drop_wall_clock(value):
        if isinstance(value, dict):
            if set(value) == {"asked", "used", "why"}:   # train.compile's choice: its reason names the stack's size,
                value = {k: v for k, v in value.items() if k != "why"}   # which a retried task may change
            return {k: drop_wall_clock(v) for k, v in value.items() if k not in WALL_CLOCK}
        return [drop_wall_clock(v) for v in value] if isinstance(value, list) else value
    results = drop_wall_clock(json.loads((exp_dir / "results.json").read_text()))
    assert "val_loss" in json.dumps(results)  # what is left still holds the runs' results
    return results, re.sub(r"Built \S+ from", "Built from", (exp_dir / "report.md").read_text())


@pytest.mark.ray
def test_a_task_whose_cancel_was_lost_stops_on_the_flag_with_a_checkpoint(cluster, tmp_path):
    """Ray's cancel can miss a task (its worker still starting, or its dispatch racing the cancel: seen in CI); the
    driver's stop flag alone, with no cancel at all here, must stop a training task the way a cancel does."""
    import ray
    from ray.util.queue import Queue

    import normlab as nl
    from normlab.config import to_dict

    run_dir = tmp_path / "exp" / "r"
    run_dir.parent.mkdir()
    cfg = nl.load_config("prepost", ["train.steps=20000", "train.ckpt_every=0", "name=r", f"out_dir={run_dir.parent}"])
    ray.init(address=cluster.address)
    try:
        stop, inbox = ray.remote(ray_launcher._StopFlag).remote(), Queue()
        ref = ray.remote(ray_launcher._ray_body).remote([(to_dict(cfg), str(run_dir))], 1, str(tmp_path), inbox, stop)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ((run_dir / "metrics.jsonl").exists() and any(
                '"step"' in line for line in (run_dir / "metrics.jsonl").read_text().splitlines())):
            time.sleep(0.2)
        ray.get(stop.set.remote())
        out = ray.get(ref, timeout=120)
    finally:
        ray.shutdown()
    assert out["r"]["status"] == "interrupted", out
    step = out["r"]["step"]
    assert 0 < step < 20000
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "interrupted"
    assert _steps(run_dir) == [step] and not _lock_held(run_dir)   # the stop's own checkpoint (ckpt_every=0)


@pytest.mark.ray
def test_ctrl_c_checkpoints_running_runs_and_exits_130(cluster, tmp_path):
    proc = _normlab(cluster, "prepost", "--seeds", "2", "train.steps=3000", "train.ckpt_every=1000",
                    "--out", str(tmp_path))
    try:
        # the stop lands as the first stack trains, while the other tasks' workers may still be starting: Ray's cancel
        # can miss such a task, which then reads the stop flag (ray._watch_stop) and stops as a cancelled one would
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any(
                "step" in line for f in tmp_path.glob("*/*/metrics.jsonl") for line in f.read_text().splitlines()[-1:]):
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the driver
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(out)
    assert proc.returncode == 130, out
    assert "stopping:" in out and "continue with: normlab run prepost" in out and "--launcher ray" in out
    stopped = [p for p in tmp_path.glob("*/*") if (p / "meta.json").exists()]
    assert stopped, out
    mid_run = []
    for run_dir in stopped:
        meta = json.loads((run_dir / "meta.json").read_text())
        assert meta["status"] == "interrupted", (run_dir.name, meta)
        assert not (run_dir / "summary.json").exists()
        assert not _lock_held(run_dir)  # the Ray worker let the run go
        steps = _steps(run_dir)
        last = steps[-1] if steps else 0   # a stack stopped while it was still setting up trained no step
        mid_run += [last] if 0 < last < 3000 and last % 1000 else []  # the stop's own checkpoint
    assert mid_run, out
