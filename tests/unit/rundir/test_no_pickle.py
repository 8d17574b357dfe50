"""Nothing normlab loads can run code: every load path meets crafted pickle payloads and refuses them.

A payload is an object whose __reduce__ writes a marker file when it is unpickled. It is planted as
a raw pickle, as a torch zip (torch.save of the object, what torch.load would unpickle), as a
`state.pt` in a checkpoint folder (normlab 0.1's pickled optimizer state) and as an .npz holding an
object array, in every file a command loads: `normlab train --resume`, a `normlab run` re-run,
`normlab replay` (forensics/last_good, forensics.npz, a forensics.json whose `checkpoint` points
outside the run), `normlab sample`, `normlab report`, and `normlab pull` of a tampered repo followed
by sample / replay / report. Each case asserts that the marker is never written and that the
command fails with one clear line naming the file (or, where the file is not read, that it is
ignored and the command succeeds). First, the payloads are shown to be live: the unsafe loaders
do write the marker. Last, the source tree is searched for the calls that would unpickle.

Cases: 6 live-payload checks, 31 load-path cases, 3 pull cases, 6 source checks.
"""
import ast
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from oneline import invoke, refused
from test_publish import fake_hub  # noqa: F401  (the folder-backed Hub fixture)
from tinyruns import latest, make_partial, resume_args
from repo import SRC


class Payload:
    """Unpickling this writes `marker` (a stand-in for any code an attacker wants run)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def raw_pickle(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def torch_zip(marker: Path) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"model": Payload(marker)}, buf)
    return buf.getvalue()


def object_npz(marker: Path, key: str = "x") -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **{key: np.array([Payload(marker), 1], dtype=object)})
    return buf.getvalue()


FORMS = {"pickle": raw_pickle, "torch-zip": torch_zip, "npz": object_npz}


pytestmark = pytest.mark.usefixtures("in_tmp")   # conftest.py: each case in its own folder


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload ran: something unpickled a file"


# ---------------------------------------------------------------- the payloads are live

@pytest.mark.parametrize("form", ["pickle", "torch-zip", "npz"])
def test_the_payloads_run_code_when_loaded_unsafely(form, tmp_path):
    live = tmp_path / "LIVE"
    path = tmp_path / f"payload.{form}"
    path.write_bytes(FORMS[form](live))
    if form == "pickle":
        pickle.loads(path.read_bytes())
    elif form == "torch-zip":
        torch.load(path, weights_only=False)   # the call normlab never makes
    else:
        with np.load(path, allow_pickle=True) as z:
            z["x"]
    assert live.read_text() == "pwned"


@pytest.mark.parametrize("form", ["pickle", "torch-zip", "npz"])
def test_the_safe_loaders_refuse_them(form, tmp_path):
    """The loaders normlab uses, called directly: safetensors, np.load(allow_pickle=False), torch's weights_only."""
    from safetensors.torch import load_file

    live = tmp_path / "LIVE"
    path = tmp_path / "payload"
    path.write_bytes(FORMS[form](live))
    with pytest.raises(Exception):
        load_file(str(path))
    if form != "torch-zip":   # a torch zip is a zip: np.load opens it and hands its members back as bytes
        with pytest.raises(ValueError, match="allow_pickle"):
            data = np.load(path, allow_pickle=False)
            [data[k] for k in data.files] if hasattr(data, "files") else None
    else:
        from normlab.config import ConfigError
        from normlab.rundir import read_npz

        with pytest.raises(ConfigError, match="not a numpy .npz archive"):
            read_npz(path)
    assert not live.exists()


# ---------------------------------------------------------------- every load path

def _plant(run: Path, rel: str, content: bytes) -> Path:
    path = run / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _command(cmd: str, root: Path) -> list:
    return {"resume": resume_args(root), "sample": ["sample", root / "done"], "report": ["report", root, "--figures", "all"],
            "replay": ["replay", root / "div"]}[cmd]


RUN_OF = {"resume": "part", "sample": "done", "report": "done", "replay": "div"}

# (command, file it loads ({ck}: the checkpoint `latest` names), payload form, names in the refusal or None when
# the file is not read and the command must succeed)
CASES = [
    ("resume", "{ck}/model.safetensors", "pickle", ["model.safetensors"]),
    ("resume", "{ck}/model.safetensors", "torch-zip", ["model.safetensors"]),
    ("resume", "{ck}/state.safetensors", "pickle", ["state.safetensors"]),
    ("resume", "{ck}/state.safetensors", "torch-zip", ["state.safetensors"]),
    ("resume", "{ck}/state.json", "pickle", ["state.json"]),
    ("resume", "{ck}/state.pt", "torch-zip", None),                 # beside a whole checkpoint: never opened
    ("resume", "{ck}/state.pt@instead", "torch-zip", ["state.pt", "pickle"]),   # in place of state.safetensors
    ("resume", "{ck}/model.pt", "torch-zip", None),
    ("resume", "probes/step_000003.npz", "npz", None),                # training writes probes, never reads them
    ("sample", "{ck}/model.safetensors", "pickle", ["model.safetensors"]),
    ("sample", "{ck}/model.safetensors", "torch-zip", ["model.safetensors"]),
    ("sample", "{ck}/state.pt", "torch-zip", None),
    ("sample", "tokenizer.json", "pickle", ["tokenizer.json"]),
    ("sample", "config.yaml", "pickle", ["config.yaml"]),
    ("report", "probes/step_000003.npz", "npz", ["step_000003.npz"]),
    ("report", "probes/step_000006.npz", "torch-zip", ["step_000006.npz"]),
    ("report", "summary.json", "pickle", ["summary.json"]),
    ("report", "metrics.jsonl", "pickle", ["metrics.jsonl"]),
    ("report", "{ck}/model.safetensors", "torch-zip", None),         # a report reads no weights
    ("replay", "forensics/last_good/model.safetensors", "pickle", ["model.safetensors"]),
    ("replay", "forensics/last_good/model.safetensors", "torch-zip", ["model.safetensors"]),
    ("replay", "forensics/last_good/state.safetensors", "pickle", ["state.safetensors"]),
    ("replay", "forensics/last_good/state.safetensors", "torch-zip", ["state.safetensors"]),
    ("replay", "forensics/last_good/state.pt@instead", "torch-zip", ["state.pt", "pickle"]),
    ("replay", "forensics.npz", "npz", ["forensics.npz"]),
    ("replay", "forensics.npz", "torch-zip", ["forensics.npz"]),
    ("replay", "forensics.json", "pickle", ["forensics.json"]),
]


def _setup_case(cmd: str, rel: str, form: str, runs: Path, root: Path, marker: Path) -> Path:
    run = root / RUN_OF[cmd]
    shutil.copytree(runs / run.name, run)
    if cmd == "report":
        (root / "experiment.json").write_text(json.dumps({"name": "t", "variants": ["done"], "seeds": [0],
                                                          "runs": [{"variant": "done", "seed": 0, "dir": "done"}]}))
    instead = rel.endswith("@instead")
    rel = rel.removesuffix("@instead")
    if "{ck}" in rel:
        rel = rel.replace("{ck}", str(latest(run).relative_to(run)))
    path = _plant(run, rel, FORMS[form](marker))
    if instead:
        (path.parent / "state.safetensors").unlink()
    return path


@pytest.mark.parametrize("cmd,rel,form,names", [pytest.param(*c, id=f"{c[0]}-{c[1].replace('{ck}/', '')}-{c[2]}")
                                                for c in CASES])
def test_payload_on_a_load_path(cmd, rel, form, names, runs, tmp_path, marker):
    _setup_case(cmd, rel, form, runs, tmp_path, marker)
    r = invoke(*_command(cmd, tmp_path))
    assert not marker.exists()
    if names is None:
        assert r.exit_code == 0 and "Traceback" not in r.output, r.output + r.stderr   # ignored: never opened
    else:
        refused(r, *names)


def test_replay_refuses_a_checkpoint_outside_the_run(runs, tmp_path, marker):
    """forensics.json's `checkpoint` naming a folder of payloads next to the run: refused before anything is read."""
    shutil.copytree(runs / "div", tmp_path / "div")
    evil = tmp_path / "evil"
    for name in ("model.safetensors", "state.safetensors"):
        _plant(evil, name, torch_zip(marker))
    _plant(evil, "state.json", raw_pickle(marker))
    record = json.loads((tmp_path / "div" / "forensics.json").read_text())
    for checkpoint in ("../evil", str(evil), "forensics/../../evil"):
        record["checkpoint"] = checkpoint
        (tmp_path / "div" / "forensics.json").write_text(json.dumps(record))
        line = refused(invoke("replay", tmp_path / "div"), "forensics.json")
        assert "outside" in line or "relative path" in line


def test_a_symlink_in_the_run_cannot_lead_a_replay_outside(runs, tmp_path, marker):
    shutil.copytree(runs / "div", tmp_path / "div")
    evil = tmp_path / "evil"
    _plant(evil, "model.safetensors", torch_zip(marker))
    shutil.rmtree(tmp_path / "div" / "forensics" / "last_good")
    (tmp_path / "div" / "forensics" / "last_good").symlink_to(evil, target_is_directory=True)
    refused(invoke("replay", tmp_path / "div"), "forensics.json", "outside")


def test_run_rerun_of_a_partial_run_with_a_pickled_checkpoint(sweep, tmp_path, marker):
    """The worker process resumes the run: its load refuses the payload (the marker is a file, so a worker that
    unpickled it would leave it behind), the sweep reports the run as failed."""
    spec, out = sweep
    shutil.copytree(out, tmp_path / "out")
    run = tmp_path / "out" / "tiny" / "a-seed0"
    make_partial(run)
    (latest(run) / "model.safetensors").write_bytes(torch_zip(marker))
    (latest(run) / "state.pt").write_bytes(torch_zip(marker))
    refused(invoke("run", spec, "--out", tmp_path / "out"), "a-seed0", "model.safetensors", code=1)


def test_run_rerun_reports_refuse_pickled_probe_arrays(sweep, tmp_path, marker):
    spec, out = sweep
    shutil.copytree(out, tmp_path / "out")
    run = tmp_path / "out" / "tiny" / "a-seed0"
    (run / "probes" / "step_000003.npz").write_bytes(object_npz(marker, "attn_entropy/per_head"))
    refused(invoke("run", spec, "--out", tmp_path / "out", "--figures", "all"), "step_000003.npz")   # all: reads every npz


# ---------------------------------------------------------------- a tampered Hub repo

def _push(run: Path, repo: str) -> None:
    r = invoke("push", run, repo, "--with-optimizer")
    assert r.exit_code == 0, r.output + r.stderr


def test_pull_then_sample_a_repo_with_pickled_weights(runs, tmp_path, marker, fake_hub):  # noqa: F811
    shutil.copytree(runs / "done", tmp_path / "done")
    (latest(tmp_path / "done") / "model.safetensors").write_bytes(torch_zip(marker))
    _push(tmp_path / "done", "mallory/weights")
    assert invoke("pull", "mallory/weights", "--out", tmp_path / "pulled").exit_code == 0
    refused(invoke("sample", tmp_path / "pulled"), "model.safetensors")


def test_pull_then_replay_a_repo_with_pickled_forensics(runs, tmp_path, marker, fake_hub):  # noqa: F811
    shutil.copytree(runs / "div", tmp_path / "div")
    (tmp_path / "div" / "forensics.npz").write_bytes(object_npz(marker, "batch_index/step_000006"))
    (tmp_path / "div" / "forensics" / "last_good" / "state.pt").write_bytes(torch_zip(marker))
    _push(tmp_path / "div", "mallory/forensics")
    assert invoke("pull", "mallory/forensics", "--out", tmp_path / "pulled").exit_code == 0
    assert (tmp_path / "pulled" / "forensics" / "last_good" / "state.pt").exists()   # it travelled with the repo
    refused(invoke("replay", tmp_path / "pulled"), "forensics.npz")
    (tmp_path / "pulled" / "forensics" / "last_good" / "state.safetensors").unlink()  # only the pickle left
    refused(invoke("replay", tmp_path / "pulled"), "state.pt", "pickle")


def test_pull_then_report_an_experiment_with_pickled_probes(runs, tmp_path, marker, fake_hub):  # noqa: F811
    exp = tmp_path / "exp"
    shutil.copytree(runs / "done", exp / "done")
    (exp / "experiment.json").write_text(json.dumps({"name": "t", "title": "t", "variants": ["done"], "seeds": [0],
                                                     "runs": [{"variant": "done", "seed": 0, "dir": "done"}]}))
    (exp / "done" / "probes" / "step_000000.npz").write_bytes(object_npz(marker, "attn_entropy/per_head"))
    _push(exp, "mallory/exp")
    assert invoke("pull", "mallory/exp", "--out", tmp_path / "pulled").exit_code == 0
    refused(invoke("report", tmp_path / "pulled", "--figures", "all"), "step_000000.npz")


# ---------------------------------------------------------------- the source never unpickles

def _sources() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    return files


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


UNPICKLING = {"torch.load", "pickle.load", "pickle.loads", "cPickle.load", "cPickle.loads", "dill.load", "dill.loads",
              "cloudpickle.load", "cloudpickle.loads", "joblib.load", "marshal.load", "marshal.loads", "shelve.open",
              "pd.read_pickle", "pandas.read_pickle", "torch.jit.load", "yaml.unsafe_load", "yaml.full_load",
              "numpy.lib.format.read_array", "eval", "exec"}


def test_no_call_that_unpickles_or_evaluates():
    found = [f"{path.relative_to(SRC)}:{node.lineno}: {name}" for path in _sources()
             for node, name in _calls(ast.parse(path.read_text())) if name in UNPICKLING]
    assert found == []


def test_no_pickle_module_is_imported():
    banned = {"pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.relative_to(SRC)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in banned]
    assert found == []


def test_every_np_load_refuses_pickles():
    loads = [(path, node) for path in _sources() for node, name in _calls(ast.parse(path.read_text()))
             if name in ("np.load", "numpy.load")]
    assert loads, "np.load is used to read .npz files; this test must see it"
    for path, node in loads:
        kw = {k.arg: k.value for k in node.keywords}
        assert isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False, \
            f"{path.relative_to(SRC)}:{node.lineno}"


def test_every_yaml_load_uses_a_safe_loader():
    import yaml

    from normlab.config import yamlsafe

    loads = [(path, node) for path in _sources() for node, name in _calls(ast.parse(path.read_text()))
             if name.startswith("yaml.") and name.endswith(("load", "load_all"))]
    for path, node in loads:
        name = ast.unparse(node.func)
        if name in ("yaml.safe_load", "yaml.safe_load_all"):
            continue
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert name == "yaml.load" and path.name == "yamlsafe.py" and kw.get("Loader") == "_StrictLoader", \
            f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}"
    # what refuses python/* tags is the constructor: SafeConstructor (SafeLoader's, and libyaml's CSafeLoader's),
    # never FullConstructor (a subclass of it that builds Python objects) nor the unsafe Constructor
    assert issubclass(yamlsafe._StrictLoader, yaml.constructor.SafeConstructor)
    assert not issubclass(yamlsafe._StrictLoader, (yaml.constructor.FullConstructor, yaml.constructor.UnsafeConstructor))
    assert yamlsafe._StrictLoader.__mro__[1] in (yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    with pytest.raises(Exception, match="constructor"):
        yamlsafe.loads("!!python/object/apply:os.system ['true']", "test")


def test_the_grep_the_issue_asks_for():
    """The plain-text search, as a reviewer would run it (comments and docstrings included)."""
    patterns = {r"torch\.load\(": "torch.load", r"pickle\.loads?\(": "pickle.load(s)",
                r"allow_pickle\s*=\s*True": "np.load(allow_pickle=True)", r"(?<![\w.])eval\(": "eval(",
                r"yaml\.load\((?!text, Loader=_StrictLoader\))": "yaml.load with another loader",
                r"weights_only\s*=\s*False": "torch weights_only=False"}
    hits = [f"{path.relative_to(SRC)}:{n}: {what}" for path in _sources()
            for n, line in enumerate(path.read_text().splitlines(), 1)
            for pattern, what in patterns.items() if re.search(pattern, line)]
    assert hits == []


def test_the_search_would_find_them():
    """The checks above can fail: each pattern and AST rule catches a planted line."""
    planted = ("x = torch.load(p)\ny = pickle.loads(b)\nz = np.load(p, allow_pickle=True)\nw = eval(s)\n"
               "v = yaml.load(t, Loader=yaml.Loader)\n")
    names = [name for _, name in _calls(ast.parse(planted))]
    assert {"torch.load", "pickle.loads", "eval"} <= set(names) & UNPICKLING
    assert re.search(r"(?<![\w.])eval\(", "w = eval(s)") and not re.search(r"(?<![\w.])eval\(", "model.eval()")
    assert re.search(r"yaml\.load\((?!text, Loader=_StrictLoader\))", "yaml.load(t, Loader=yaml.Loader)")
