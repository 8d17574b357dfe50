"""Trackers: every scalar metrics.jsonl holds is read back from TensorBoard's event files, trackio's
local store and W&B's offline run file; the config arrives as hyperparameters; an experiment groups
its runs; a tracker that raises never stops a run; a missing package is one clear ConfigError."""
import importlib.util
import json
import math
import os
import shutil
import struct
import sys

import pytest

import normlab as nl
from normlab.rundir import read_metrics
from normlab.training import trackers

NEEDED = ("tensorboard", "trackio", "wandb")
MISSING = [p for p in NEEDED if importlib.util.find_spec(p) is None]
needs_trackers = pytest.mark.skipif(bool(MISSING), reason=f"{MISSING} not installed: pip install -e '.[trackers]' "
                                                          "(.ci/run installs them)")
STEPS = 20
TINY = [f"train.steps={STEPS}", "train.eval_every=10", "train.eval_batches=1", "probes.every=10", "sample.n=1",
        "probes.forensics=false"]


def _isolated_tracker_env(mp: pytest.MonkeyPatch, root) -> None:
    """W&B offline with its config/cache under tmp (no key, no ~/.netrc); trackio's store under tmp."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_BASE_URL"):
        mp.delenv(var, raising=False)
    mp.setenv("NETRC", str(root / "no-netrc"))
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        mp.setenv(var, str(root / "wandb-home"))
    mp.setenv("TRACKIO_DIR", str(root / "trackio"))
    for name, module in list(sys.modules.items()):  # trackio reads TRACKIO_DIR once, at import
        if name.startswith("trackio") and hasattr(module, "TRACKIO_DIR"):
            mp.setattr(module, "TRACKIO_DIR", root / "trackio")


def _expected(run_dir) -> dict:
    """{(step, key): value} of every scalar in metrics.jsonl (no key twice at one step)."""
    out = {}
    for record in read_metrics(run_dir / "metrics.jsonl"):
        for key, value in trackers.scalars(record).items():
            assert (record["step"], key) not in out, (record["step"], key)
            out[record["step"], key] = value
    return out


def _same(got: dict, want: dict, rel: float = 0.0) -> None:
    assert got.keys() == want.keys(), (sorted(set(got) ^ set(want))[:10])
    bad = [k for k in want if not math.isclose(got[k], want[k], rel_tol=rel, abs_tol=1e-30)
           and not (math.isnan(got[k]) and math.isnan(want[k]))]
    assert not bad, [(k, got[k], want[k]) for k in bad[:5]]


def _tensorboard(log_dir) -> tuple[dict, dict]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    values = {(e.step, tag): e.value for tag in ea.Tags()["scalars"] for e in ea.Scalars(tag)}
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    hparams = {k: v.string_value or v.number_value or v.bool_value for k, v in info.hparams.items()}
    return values, hparams


def _wandb_records(path):
    """The records of a W&B run file (a LevelDB-style log: 7-byte header, 32 KiB blocks of CRC'd chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", path
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:       # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and n == 0:
            pos += block - pos % block
            continue
        buf += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):                 # FULL or LAST chunk: a record is complete
            yield pb.Record.FromString(buf)
            buf = b""


def _wandb(run_dir) -> tuple[dict, object]:
    [path] = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    values, run = {}, None
    for rec in _wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run = rec.run
        elif kind == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            values.update({(row["_step"], k): float(v) for k, v in row.items() if not k.startswith("_")})
    return values, run


@pytest.fixture(scope="module")
def experiment_run(tmp_path_factory):
    """One run of an experiment folder with all three trackers on (the folder holds experiment.json)."""
    root = tmp_path_factory.mktemp("trackers")
    exp = root / "demo-exp"
    exp.mkdir()
    (exp / "experiment.json").write_text("{}")
    with pytest.MonkeyPatch.context() as mp:
        _isolated_tracker_env(mp, root)
        cfg = nl.load_config("debug", [f"out_dir={root}", "train.trackers=[tensorboard, trackio, wandb]", *TINY])
        summary = nl.train(cfg, exp / "pre-seed0", display="none")
        yield exp / "pre-seed0", summary, cfg


@needs_trackers
def test_tensorboard_holds_every_scalar_and_the_config(experiment_run):
    run_dir, summary, cfg = experiment_run
    assert summary["status"] == "complete" and summary["warnings"] == []
    log_dir = run_dir.parent / "tensorboard" / "pre-seed0"        # one log dir per experiment, a subdir per run
    values, hparams = _tensorboard(log_dir)
    want = _expected(run_dir)
    assert any(k.startswith("probe/") for _, k in want) and (STEPS, "val_loss") in want
    _same(values, want, rel=1e-6)                                  # event files hold float32
    assert hparams["model.norm.kind"] == "rmsnorm" and hparams["train.steps"] == STEPS
    assert hparams["model.vocab_size"] == nl.load_run(run_dir).config.model.vocab_size > 0   # the resolved config


@needs_trackers
def test_trackio_store_holds_every_scalar_grouped_by_experiment(experiment_run):
    from trackio.sqlite_storage import SQLiteStorage

    run_dir, _, _ = experiment_run
    assert SQLiteStorage.get_runs("demo-exp") == ["pre-seed0"]     # project = the experiment folder
    got = {}
    for row in SQLiteStorage.get_logs("demo-exp", "pre-seed0"):
        got.update({(row["step"], k): v for k, v in row.items() if k not in ("step", "timestamp")})
    _same(got, _expected(run_dir))
    config = SQLiteStorage.get_run_config("demo-exp", "pre-seed0")
    assert config["model.norm.placement"] == "pre" and config["train.trackers"] == ["tensorboard", "trackio", "wandb"]


@needs_trackers
def test_wandb_offline_run_holds_every_scalar_grouped_by_experiment(experiment_run):
    run_dir, _, _ = experiment_run
    values, run = _wandb(run_dir)                                  # offline: no API key, files under the run dir
    _same(values, _expected(run_dir))
    assert run.run_group == "demo-exp" and run.display_name == "pre-seed0" and run.project == "normlab"
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["model"]["norm"]["kind"] == "rmsnorm" and config["train"]["steps"] == STEPS


@needs_trackers
def test_single_run_logs_under_its_run_dir_and_a_resume_continues_it(tiny, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    nl.train(tiny("name=solo", *TINY, "train.trackers=[tensorboard]"), until_step=10, display="none")
    log_dir = tmp_path / "solo" / "tensorboard"
    with SummaryWriter(str(log_dir)) as stale:    # what a crash after the checkpoint leaves: events past step 10
        stale.add_scalar("loss", 99.0, 15)
    summary = nl.train(tiny("name=solo", *TINY, "train.trackers=[tensorboard]"), resume=True, display="none")
    assert summary["status"] == "complete"
    values, _ = _tensorboard(log_dir)
    _same(values, _expected(tmp_path / "solo"), rel=1e-6)          # the resume purged what followed its checkpoint
    assert not (tmp_path / "tensorboard").exists()


@needs_trackers
def test_a_resume_after_a_kill_past_the_checkpoint_sends_trackio_each_record_once(tiny, tmp_path, monkeypatch):
    """A kill -9 after step 10's checkpoint had sent trackio the records of steps 11-20; the resume computes them
    again (bit for bit) and must not send them twice (trackio has no purge_step: it would hold both)."""
    from trackio.sqlite_storage import SQLiteStorage

    _isolated_tracker_env(monkeypatch, tmp_path)
    args = ("name=killed", *TINY, "train.ckpt_every=10", "train.trackers=[trackio]")
    nl.train(tiny(*args), display="none")
    run = tmp_path / "killed"
    # the state such a kill leaves: step 10 is the latest checkpoint, no summary, metrics.jsonl longer than it saw
    shutil.rmtree(run / "checkpoints" / f"step_{STEPS:06d}")
    (run / "checkpoints" / "latest").write_text("step_000010\n")
    for name in ("summary.json", "samples.txt"):
        (run / name).unlink()
    sent = json.loads((run / "trackers.json").read_text())["trackio"]
    assert sent == len(read_metrics(run / "metrics.jsonl"))
    assert nl.train(tiny(*args), resume=True, display="none")["status"] == "complete"
    rows = [((row["step"], k), v) for row in SQLiteStorage.get_logs("normlab", "killed")
            for k, v in row.items() if k not in ("step", "timestamp")]
    counts = {}
    for key, _ in rows:
        counts[key] = counts.get(key, 0) + 1
    assert {k: n for k, n in counts.items() if n > 1} == {}            # nothing sent twice
    _same(dict(rows), _expected(run))                                  # and nothing missing


@pytest.mark.parametrize("damage", ["{not json", '{"wandb": "many"}', "[1, 2]"])
def test_a_damaged_trackers_json_warns_and_the_resume_goes_on(tiny, tmp_path, recording, damage):
    nl.train(tiny("name=cut", *TINY, "train.trackers=[wandb]"), until_step=10, display="none")
    (tmp_path / "cut" / "trackers.json").write_text(damage)
    summary = nl.train(tiny("name=cut", *TINY, "train.trackers=[wandb]"), resume=True, display="none")
    assert summary["status"] == "complete"
    assert any("trackers.json" in w and "may reach the trackers twice" in w for w in summary["warnings"])


class _Recording(trackers.Tracker):
    """A tracker that records its calls and raises on the second log."""
    package = "json"
    calls: list = []

    def start(self, run):
        self.calls.append(("start", run.name, run.group))

    def log(self, records):
        self.calls.append(("log", len(records)))
        if sum(c[0] == "log" for c in self.calls) == 2:
            raise RuntimeError("dashboard went away\nsecond line")

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def recording(monkeypatch):
    _Recording.calls = []
    monkeypatch.setitem(trackers.TRACKERS, "wandb", _Recording)
    return _Recording.calls


def test_a_raising_tracker_is_closed_and_warned_and_training_goes_on(tiny, tmp_path, recording, capsys):
    summary = nl.train(tiny("name=flaky", *TINY, "train.trackers=[wandb]"), display="none")
    assert summary["status"] == "complete" and summary["steps_done"] == STEPS
    [warning] = summary["warnings"]
    assert "tracker wandb failed at log (RuntimeError: dashboard went away)" in warning and "training went on" in warning
    assert json.loads((tmp_path / "flaky" / "summary.json").read_text())["warnings"] == [warning]
    # flushes: probe@0 + steps 0-9 + update_stats@0 + probe@10, then eval@10 + steps 10-19 + probe@20 (raises); the
    # final eval never reaches the closed tracker
    assert recording == [("start", "flaky", None), ("log", 13), ("log", 12), ("close",)]
    assert "warning: tracker wandb failed" in capsys.readouterr().err


def test_trackers_added_on_resume_close_when_the_run_is_interrupted_or_diverges(tiny, recording):
    nl.train(tiny("name=cut", *TINY), until_step=5, display="none")
    cut = nl.train(tiny("name=cut", *TINY, "train.trackers=[wandb]"), resume=True, until_step=8, display="none")
    assert cut["status"] == "interrupted" and cut["step"] == 8       # train.trackers may change on resume
    assert recording == [("start", "cut", None), ("log", 3), ("close",)]
    recording.clear()
    bad = nl.train(tiny("name=bad", *TINY, "train.loss_bound=1.0", "train.trackers=[wandb]"), display="none")
    assert bad["status"] == "diverged" and recording[0][0] == "start" and recording[-1] == ("close",)


def test_a_missing_tracker_package_is_one_config_error_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(nl.ConfigError) as err:
        nl.load_config("debug", ["train.trackers=[tensorboard, wandb]"] if not MISSING else ["train.trackers=[wandb]"])
    text = str(err.value)
    assert "\n" not in text and "wandb" in text and "pip install 'normlab[wandb]'" in text and "normlab[trackers]" in text
    with pytest.raises(nl.ConfigError, match=r"'tensorbord' is not a tracker; choose from tensorboard, trackio, wandb"):
        nl.load_config("debug", ["train.trackers=[tensorbord]"])
    with pytest.raises(nl.ConfigError, match="must be a list"):
        nl.load_config("debug", ["train.trackers=tensorboard"])


def test_the_cli_refuses_a_missing_tracker_with_one_line_and_exit_2(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from normlab.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else real(name, *a))
    r = CliRunner().invoke(main, ["train", "debug", f"out_dir={tmp_path}", "train.trackers=[trackio]"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "normlab[trackio]" in r.output, r.output
    assert not any(tmp_path.iterdir())                             # refused before anything was written


def test_wandb_goes_offline_without_an_api_key(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not trackers.has_wandb_key()
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    os.chmod(tmp_path / "netrc", 0o600)
    assert trackers.has_wandb_key()
