"""kill -9 at any point, then --resume until complete: the result is byte-identical to a run never stopped.

`normlab train debug ... train.ckpt_every=5` runs in a subprocess (tests/system/killable.py) and is
killed with SIGKILL: exactly inside a checkpoint (its model file written, its optimizer state
not; its folder in place, `latest` not yet moved), in the middle of a metrics.jsonl append, after the
final checkpoint during the final evaluation, and at random points (after a random number of
metrics lines plus a random delay, so mid-step). After each kill the run is resumed; at the end its
final weights (every safetensors tensor, and the file's bytes), metrics.jsonl (deterministic by
design: wall clock goes to timing.jsonl), samples.txt and val loss must equal an uninterrupted run's.
Kills: 6 in the default run (4 planted, 2 random, chained on one run); under -m slow, 5 planted points one
by one and 3 runs of up to 4 random kills each. Last, in process: a checkpoint at an eval/probe step (and
the final one) keeps that step's val_loss and probe records, once (2 cases).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from normlab.training.loop import WALL_CLOCK_KEYS

KILLABLE = Path(__file__).with_name("killable.py")
ARGS = ["train.steps=40", "train.ckpt_every=5", "train.eval_every=10", "probes.every=10", "train.log_every=1",
        "train.eval_batches=1", "sample.n=2", "train.threads=1"]
STEPS = 40
WALL_CLOCK = ("name", *WALL_CLOCK_KEYS)  # name: the runs are called cut and ref


def _cmd(root: Path, name: str, resume: bool) -> list:
    return [sys.executable, str(KILLABLE), "train", "debug", f"out_dir={root}", f"name={name}", *ARGS] + \
        (["--resume"] if resume else [])


def _env(pause: str | None, marker: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NORMLAB_PAUSE", "NORMLAB_DEBUG")}
    if pause:
        env.update(NORMLAB_PAUSE=pause, NORMLAB_PAUSE_MARKER=str(marker))
    return env


def _wait_for(cond, proc, what: str, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def run_to_pause(root: Path, name: str, pause: str, resume: bool) -> None:
    """Start (or resume) the run with a pause planted, wait until it sits there, kill -9 it."""
    marker = root / f".paused-{name}"
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(_cmd(root, name, resume), env=_env(pause, marker), cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(marker.exists, proc, f"the pause {pause}")
    _kill(proc)


def _metrics_lines(run: Path) -> int:
    try:
        return (run / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run_to_random_kill(root: Path, name: str, rng: random.Random, resume: bool, most: int = 30,
                       barrier: str | None = None) -> bool:
    """Kill after 1..most new metrics lines and a random delay; False if the run finished first.

    `barrier` plants a pause the run cannot pass: on a fast machine a step takes about a millisecond, so the
    random delay alone could carry the run past the planted point the test wants next (CI saw it resume at
    step 10 when the next pause was at step 10's checkpoint). Reaching the barrier first, it is killed there."""
    run = root / name
    marker = root / f".paused-{name}"
    marker.unlink(missing_ok=True)
    start = _metrics_lines(run)
    target = start + rng.randint(1, most)
    proc = subprocess.Popen(_cmd(root, name, resume), env=_env(barrier, marker), cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while _metrics_lines(run) < target and proc.poll() is None and not marker.exists():
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.05))
    if proc.poll() is not None:
        assert proc.returncode == 0, proc.stderr.read()
        return False
    _kill(proc)
    return True


def resume_to_end(root: Path, name: str) -> None:
    p = subprocess.run(_cmd(root, name, True), env=_env(None, root), cwd=root, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert json.loads((root / name / "summary.json").read_text())["status"] == "complete"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in a subprocess like the others (same thread count, same code path)."""
    root = tmp_path_factory.mktemp("reference")
    p = subprocess.run(_cmd(root, "ref", False), env=_env(None, root), cwd=root, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return root / "ref"


def _final_weights(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip() / "model.safetensors"


def assert_identical(run: Path, ref: Path) -> None:
    assert (run / "metrics.jsonl").read_bytes() == (ref / "metrics.jsonl").read_bytes()
    ours, theirs = load_file(str(_final_weights(run))), load_file(str(_final_weights(ref)))
    assert ours.keys() == theirs.keys() and all(ours[k].equal(theirs[k]) for k in ours)
    assert _final_weights(run).read_bytes() == _final_weights(ref).read_bytes()
    assert (run / "samples.txt").read_text() == (ref / "samples.txt").read_text()
    a, b = ({k: v for k, v in json.loads((r / "summary.json").read_text()).items() if k not in WALL_CLOCK}
            for r in (run, ref))
    assert a == b  # val loss, train losses, and the probes' peaks over all of training (not since the resume)
    assert not list((run / "checkpoints").glob(".tmp_*")), "a half-written checkpoint was left behind"


def test_killed_at_every_planted_point_and_at_random_then_resumed(reference, tmp_path):
    run, rng = tmp_path / "cut", random.Random(0)
    assert run_to_random_kill(tmp_path, "cut", rng, resume=False, most=6, barrier="ckpt-files:10")  # first steps

    run_to_pause(tmp_path, "cut", "ckpt-files:10", resume=True)
    tmp = run / "checkpoints" / ".tmp_step_000010"
    assert sorted(p.name for p in tmp.iterdir()) == ["model.safetensors"]          # killed mid-checkpoint
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000005"

    run_to_pause(tmp_path, "cut", "ckpt-latest:15", resume=True)
    assert (run / "checkpoints" / "step_000015" / "state.json").exists()
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000010"     # the pointer not yet moved

    assert run_to_random_kill(tmp_path, "cut", rng, resume=True, most=6, barrier="flush:22")

    run_to_pause(tmp_path, "cut", "flush:22", resume=True)
    assert not (run / "metrics.jsonl").read_bytes().endswith(b"\n")                  # a torn last line

    run_to_pause(tmp_path, "cut", f"final:{STEPS}", resume=True)
    assert (run / "checkpoints" / "latest").read_text().strip() == f"step_{STEPS:06d}"
    assert not (run / "summary.json").exists()

    resume_to_end(tmp_path, "cut")
    assert_identical(run, reference)


@pytest.mark.slow
@pytest.mark.parametrize("pause", ["ckpt-files:5", "ckpt-files:35", "ckpt-latest:20", "flush:3", "final:40"])
def test_each_planted_point_alone(pause, reference, tmp_path):
    run_to_pause(tmp_path, "cut", pause, resume=False)
    resume_to_end(tmp_path, "cut")
    assert_identical(tmp_path / "cut", reference)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_kills(seed, reference, tmp_path):
    rng = random.Random(seed)
    for _ in range(4):
        if not run_to_random_kill(tmp_path, "cut", rng, resume=(tmp_path / "cut").exists()):
            break
    resume_to_end(tmp_path, "cut")
    assert_identical(tmp_path / "cut", reference)


# ---------------------------------------------------------------- resume never loses (or repeats) a record

RECORDS = ["train.steps=30", "train.ckpt_every=10", "train.eval_every=10", "probes.every=10", "train.log_every=7",
           "train.eval_batches=1", "sample.n=1"]


def _records(run: Path) -> list[dict]:
    from normlab.rundir import read_metrics

    return read_metrics(run / "metrics.jsonl")


@pytest.mark.parametrize("back_to", [10, 30], ids=["eval+probe-step-10", "final-step-30"])
def test_a_checkpoint_at_an_eval_and_probe_step_keeps_their_records(back_to, tiny, tmp_path):
    """Kill right after the checkpoint at an eval/probe step (`latest` moved back to it, records written after
    it still in the file, as a kill leaves the run), resume: that step's val_loss and probe records are there
    once, and metrics.jsonl equals a run never stopped. At the final step the kill comes during the final
    evaluation (summary.json not yet written)."""
    import shutil

    import normlab as nl

    nl.train(tiny("name=full", *RECORDS))
    full, cut = tmp_path / "full", tmp_path / "cut"
    if back_to < 30:
        nl.train(tiny("name=cut", *RECORDS), until_step=back_to + 5)   # checkpoints at back_to and back_to + 5
    else:
        shutil.copytree(full, cut)
        (cut / "summary.json").unlink()
        (cut / "samples.txt").unlink()
    (cut / "checkpoints" / "latest").write_text(f"step_{back_to:06d}\n")
    info = json.loads((cut / "checkpoints" / f"step_{back_to:06d}" / "state.json").read_text())
    kept = _records(cut)[: info["metrics_lines"]]
    if back_to < 30:  # records after the checkpoint, to drop; the checkpoint already counts that step's eval, probes
        assert len(_records(cut)) > len(kept)
        assert {"val_loss", "probe/attn_entropy/layer0"} <= {k for r in kept if r["step"] == back_to for k in r}
    nl.train(tiny("name=cut", *RECORDS), resume=True)
    assert (cut / "metrics.jsonl").read_bytes() == (full / "metrics.jsonl").read_bytes()
    for step in (10, 20, 30):
        at = [r for r in _records(cut) if r["step"] == step]
        assert sum("val_loss" in r for r in at) == 1 and sum("probe/attn_entropy/layer0" in r for r in at) == 1
