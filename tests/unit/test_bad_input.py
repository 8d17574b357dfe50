"""Bad input is one clear line, never a traceback, and never changes or deletes what the user wrote.

Every case runs a real command through click's CliRunner (four through real subprocesses, for the
exit code a shell sees) and asserts: exit code 2 (1 for a sweep whose run failed: its report is
still written), exactly one line on stderr naming the key or the file (click's usage block around
its own argument errors is allowed), no "Traceback", and that every file under the case's folder
is byte-identical afterwards (for `run` re-runs: every file but the ones normlab writes, the
report and the failed run's summary.json). The broken run directories are copies of three tiny
runs trained once per module (complete, interrupted, diverged with forensics) and of one sweep.

Cases per family (as of issue 24: the schema walk runs in process; 11 more are -m slow):
  cli arguments         62  run/train/sample/report/replay/push/pull/list/show and the top level, bad arguments
  schema overrides    480  every numeric field of RunConfig: below/above its Range, nan, inf, a string, a bool, a
                            list, through load_config in process (7 per field); 7 of them through `train` and
                            every 8th field below its Range through `run`, the CLI paths
  other overrides       61  sections replaced, lists, run names, registries, cross-field rules, syntax,
                            synthetic sources' parameters (name, range, type, repeats, tokenizer/task/val_source)
  yaml files            31  duplicate keys, aliases / billion laughs, non-UTF-8, lists, 5 MB, tags, depth, experiments
  data files            18  corrupt/truncated .gz and .parquet, non-string text, cache_dir a file, short data
  run directories       27  out_dir/--out a file, unwritable or under a file; a user's folder; checkpoints/latest
  corrupt run files    114  every file each command reads x {garbage, truncated, empty}, hand edits, a torn last
                            line, for train --resume, run re-runs, sample, report, replay (11 slow: re-runs whose
                            worker meets the damage, one process each)
  real processes         4  the exit code and stderr a shell sees
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from typing import Annotated, get_args, get_origin

import numpy as np
import pytest
import yaml

from normlab.config import RunConfig
from normlab.config.schema import Range

from oneline import changed, invoke, refused, snapshot
from tinyruns import TINY_EXPERIMENT, make_partial, resume_args

GARBAGE = bytes(range(256)) * 3   # not UTF-8, not JSON, not a zip, not safetensors; holds newlines
MODES = ("garbage", "truncated", "empty")


pytestmark = pytest.mark.usefixtures("in_tmp")   # conftest.py: each case in its own folder


# ---------------------------------------------------------------- cli arguments

def _cli_cases():
    c = []
    add = lambda args, *names, id: c.append(pytest.param(args, names, id=id))  # noqa: E731
    for seeds in ("5000000", "0", "5-2", "a,b", "1,2,x", "-1", "1e3", "2147483648", "0-2000", "", "3,", "1..4"):
        add(["run", "prepost", "--seeds", seeds], "--seeds", id=f"run-seeds-{seeds or 'empty'}")
    add(["run", "prepost", "--jobs", "0"], "--jobs", id="run-jobs-0")
    add(["run", "prepost", "--jobs", "65"], "--jobs", id="run-jobs-65")
    add(["run", "prepost", "--jobs", "x"], "--jobs", id="run-jobs-x")
    add(["run", "nosuch"], "nosuch", id="run-unknown-experiment")
    add(["run", "prepots"], "prepost", id="run-typo-suggests")           # did you mean prepost?
    add(["run", "prepost", "train.seed=3"], "train.seed", "--seeds", id="run-train-seed")
    add(["run", "prepost", "pre:train.seed=3"], "train.seed", "--seeds", id="run-scoped-train-seed")
    add(["run", "calibration", "makemre:data.source=names"], "makemre", "nanogpt, makemore",
        id="run-scoped-unknown-variant")
    add(["run", "prepost", "--preset", "nosuch"], "nosuch", id="run-unknown-preset")
    add(["run", "prepost", "--replicate", "nowhere"], "nowhere", id="run-replicate-missing")
    add(["run", "prepost", "--bogus"], "--bogus", id="run-unknown-flag")
    add(["run", "prepost", "--figures", "some"], "--figures", "'summary', 'all'", id="run-figures-unknown")
    add(["run"], "EXPERIMENT", id="run-no-argument")
    add(["train", "nosuch"], "nosuch", id="train-unknown-config")
    add(["train", "nosuch.yaml"], "nosuch.yaml", id="train-missing-yaml")
    add(["train"], "CONFIG", id="train-no-argument")
    add(["train", "debug", "--bogus=1"], "--bogus", id="train-unknown-flag")
    add(["sample", "nowhere"], "nowhere", id="sample-missing-dir")
    add(["sample", "."], "not a run directory", id="sample-not-a-run")
    for n in ("0", "-1", "100000000", "x", "2.5"):
        add(["sample", ".", "--n", n], "--n", id=f"sample-n-{n}")
    add(["sample", ".", "--seed", str(2 ** 70)], "--seed", id="sample-seed-2**70")
    add(["sample", ".", "--seed", "-1"], "--seed", id="sample-seed-negative")
    for t in ("-1", "101", "x"):
        add(["sample", ".", "--temperature", t], "--temperature", id=f"sample-temperature-{t}")
    add(["report", "nowhere"], "nowhere", id="report-missing-dir")
    add(["report", "."], "has no run directories", id="report-empty-dir")
    add(["report", ".", "--figures", "every"], "--figures", "'summary', 'all'", id="report-figures-unknown")
    add(["replay", "nowhere"], "nowhere", id="replay-missing-dir")
    add(["replay", "."], "no forensics.json", id="replay-no-forensics")
    for repo in ("noslash", "a/b/c", "/name", "user/", "a b/c", "_x/y", "u/" + "n" * 100):
        add(["push", ".", repo], "repo id", id=f"push-repo-{repo[:12]}")
    add(["push", ".", "alice/x"], "neither a finished run", id="push-not-a-run")
    add(["pull", "noslash"], "repo id", id="pull-repo-noslash")
    add(["pull", "a/b/c"], "repo id", id="pull-repo-a/b/c")
    add(["list", "bogus"], "bogus", id="list-unknown")
    add(["show", "nosuch"], "nosuch", id="show-unknown-config")
    add(["show", "debug", "train.lr=x"], "train.lr", id="show-bad-override")
    add(["bogus"], "bogus", id="unknown-command")
    return c


CLI_CASES = _cli_cases()


@pytest.mark.parametrize("args,names", CLI_CASES)
def test_cli_arguments(args, names, tmp_path):
    before = snapshot(tmp_path)
    refused(invoke(*args), *names)
    assert changed(before, snapshot(tmp_path)) == []


def test_sample_options_on_a_real_run(runs, tmp_path):
    """--temperature nan / inf and a prompt outside the vocabulary, on a run that exists."""
    shutil.copytree(runs / "done", tmp_path / "done")
    before = snapshot(tmp_path)
    refused(invoke("sample", tmp_path / "done", "--temperature", "nan"), "--temperature")
    refused(invoke("sample", tmp_path / "done", "--temperature", "inf"), "--temperature")
    refused(invoke("sample", tmp_path / "done", "--prompt", "Zq!"), "--prompt", "not in the vocabulary")
    assert changed(before, snapshot(tmp_path)) == []


def test_pull_never_writes_into_a_folder_with_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    refused(invoke("pull", "alice/x", "--out", tmp_path / "mine"), "already exists and is not empty")
    refused(invoke("pull", "alice/x", "--out", tmp_path / "mine" / "notes.txt"), "--out")
    assert changed(before, snapshot(tmp_path)) == []


# ---------------------------------------------------------------- dotted overrides from the schema

def numeric_fields():
    """(dotted key, int or float, Range) of every range-checked number in RunConfig."""
    out = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
            elif get_origin(tp) is Annotated:
                base, *extras = get_args(tp)
                out.append((f"{prefix}{f.name}", base, next(e for e in extras if isinstance(e, Range))))
    walk(RunConfig, "")
    return out


def _yaml_number(x, kind) -> str:
    return str(int(x)) if kind is int else repr(float(x))


def _bad_values(kind, rng: Range) -> dict[str, str]:
    """kind of damage -> the override's value text."""
    values = {}
    if rng.ge is not None:
        values["below"] = _yaml_number(rng.ge - 1, kind)
    elif rng.gt is not None:
        values["below"] = _yaml_number(rng.gt, kind)          # the open bound itself is out
    if rng.le is not None:
        values["above"] = _yaml_number(rng.le + 1 if kind is int else rng.le * 2 + 1, kind)
    elif rng.lt is not None:
        values["above"] = _yaml_number(rng.lt, kind)
    values.update({"nan": ".nan", "inf": ".inf", "string": "abc", "bool": "true", "list": "[1, 2]"})
    return values


NUMERIC = numeric_fields()
SCHEMA_CASES = [pytest.param(key, value, kind_of_damage, id=f"{key}-{kind_of_damage}")
                for key, kind, rng in NUMERIC for kind_of_damage, value in _bad_values(kind, rng).items()]


def test_the_schema_cases_cover_every_number():
    assert len(NUMERIC) >= 58 and len(SCHEMA_CASES) == 7 * len(NUMERIC)   # a new number field adds its cases itself
    assert all(r.ge is not None or r.gt is not None for _, _, r in NUMERIC)   # every number has a floor


@pytest.mark.parametrize("key,value,damage", SCHEMA_CASES)
def test_schema_override_in_process(key, value, damage):
    """Every number's bounds and wrong types, through the loader the CLI calls (load_config raises the line the
    CLI prints after `error: `); the CLI path itself is checked on a sample below."""
    from normlab.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config("debug", ["train.steps=1", f"{key}={value}"])
    line = str(err.value)
    assert key in line and "\n" not in line and "(config)" not in line, line
    if damage in ("below", "above"):
        assert "out of range; allowed: " in line


# one key per kind of damage, spread over the schema, through the real CLI (train) and the sweep CLI (run)
CLI_SAMPLE = [SCHEMA_CASES[8 * i] for i in range(7)]   # field i, damage kind i (7 kinds a field)


@pytest.mark.parametrize("key,value,damage", CLI_SAMPLE)
def test_schema_override_under_train(key, value, damage, tmp_path):
    line = refused(invoke("train", "debug", f"out_dir={tmp_path}", "train.steps=1", f"{key}={value}"), key)
    if damage in ("below", "above"):
        assert "out of range; allowed: " in line
    assert snapshot(tmp_path) == {}


@pytest.mark.parametrize("key,kind,rng", [pytest.param(k, t, r, id=k) for k, t, r in NUMERIC[::8]])
def test_schema_override_under_run(key, kind, rng, tmp_path):
    value = _bad_values(kind, rng)["below"]
    refused(invoke("run", "prepost", "--out", tmp_path, f"{key}={value}"), key)
    assert snapshot(tmp_path) == {}


# ---------------------------------------------------------------- other overrides

OVERRIDE_CASES = [pytest.param(o, names, id=o[0][:40]) for o, names in [
    (["train={}"], ["train", "is a section"]),
    (["model=3"], ["model", "is a section"]),
    (["model.norm={kind: dyt}"], ["model.norm", "is a section"]),
    (["train.betas=[0.9]"], ["train.betas"]),
    (["train.betas=[a, b]"], ["train.betas"]),
    (["train.betas=[0.9, 1.5]"], ["train.betas"]),
    (["train.betas=0.9"], ["train.betas"]),
    (["name="], ["name="]),
    (["name=.."], ["name='..'"]),
    (["name=../../x"], ["name='../../x'"]),
    (["name=/abs"], ["name='/abs'"]),
    (["name=a/b"], ["name='a/b'"]),
    (["name=.hidden"], ["name='.hidden'"]),
    (["name=-x"], ["name='-x'"]),
    (["name=" + "n" * 201], ["name="]),
    (["name=[1]"], ["name"]),
    (["out_dir="], ["out_dir"]),
    (["probes.names=[{}]"], ["probes.names"]),
    (["probes.names=[bogus]"], ["probes.names", "bogus"]),
    (["probes.names=all"], ["probes.names"]),
    (["data.special_tokens=[1]"], ["data.special_tokens"]),
    (["data.special_tokens=[]", "data.tokenizer=bpe"], ["data.special_tokens"]),
    (["model.norm.kind=bogus"], ["model.norm.kind"]),
    (["model.norm.kind=rmsnrm"], ["model.norm.kind", "did you mean rmsnorm"]),
    (["model.norm.placement=bogus"], ["model.norm.placement"]),
    (["model.norm.kind=dyt", "model.norm.placement=post"], ["dyt", "post"]),
    (["model.norm.options={x: 1}"], ["model.norm.options"]),
    (["model.norm.options=3"], ["model.norm.options"]),
    (["model.norm.kind.x=1"], ["model.norm.kind", "is a value"]),
    (["train.lr.x=1"], ["train.lr", "is a value"]),
    (["bogus.key=1"], ["bogus"]),
    (["train.bogus=1"], ["train.bogus"]),
    (["model.norm.placment=post"], ["model.norm.placment", "did you mean model.norm.placement"]),
    (["=3"], ["=3"]),
    (["train.lr"], ["train.lr"]),
    (["train.lr=["], ["train.lr=["]),
    (["train.lr={a: "], ["train.lr"]),
    (["model.n_head=3"], ["model.d_model", "model.n_head"]),
    (["model.pos=rope", "model.d_model=18", "model.n_head=2"], ["model.pos=rope"]),
    (["model.attn.logit_clamp=1", "model.attn.logit_softcap=1"], ["logit_clamp", "logit_softcap"]),
    (["train.warmup_steps=30"], ["train.warmup_steps"]),
    (["train.optimizer=lamb"], ["train.optimizer", "adam"]),
    (["data.tokenizer=bpe", "data.batching=doc"], ["data.batching"]),
    (["model.vocab_size=3"], ["model.vocab_size"]),
    (["model.block_size=100000"], ["memory", "model.block_size"]),
    (["train.device=cuda"], ["train.device=cuda"]),
    (["model.arch=ngpt"], ["model.arch=ngpt", "model.norm.placement"]),
    (["model.attn.softmax=relu6"], ["model.attn.softmax"]),
    (["data.source=synthetic:bogus"], ["data.source", "bogus"]),
    (["data.source=synthetic:"], ["data.source"]),
    (["data.source=synthetic:bos-zipf?vocab=1"], ["data.source", "vocab=1"]),
    (["data.source=synthetic:bos-zipf?vocab=x"], ["data.source", "vocab='x'"]),
    (["data.source=synthetic:bos-zipf?alpha=-0.5"], ["data.source", "alpha=-0.5"]),
    (["data.source=synthetic:bos-zipf?alpha=nan"], ["data.source", "alpha=nan"]),
    (["data.source=synthetic:bos-zipf?zeta=2"], ["data.source", "zeta"]),
    (["data.source=synthetic:bos-zipf?vocab"], ["data.source", "needs a value"]),
    (["data.source=synthetic:bigram-backcopy?k=0"], ["data.source", "k=0"]),
    (["data.source=synthetic:bigram-backcopy?k=2&k=3"], ["data.source", "twice"]),
    (["data.source=synthetic:bigram-backcopy", "data.tokenizer=bpe"], ["data.source", "data.tokenizer=char"]),
    (["data.source=synthetic:bigram-backcopy", "data.task=reverse", "model.encoder_layers=2", "model.pos=rope"], ["data.source", "data.task=lm"]),
    (["data.val_source=synthetic:bos-zipf"], ["data.val_source"]),
]]


@pytest.mark.parametrize("overrides,names", OVERRIDE_CASES)
def test_other_overrides(overrides, names, tmp_path):
    if "train.device=cuda" in overrides:
        import torch

        assert not torch.cuda.is_available()  # this case is about a machine without CUDA, like the tests' own
    refused(invoke("train", "debug", f"out_dir={tmp_path / 'out'}", "train.steps=1", *overrides), *names)
    assert snapshot(tmp_path) == {}      # no run folder, no .lock left behind


# ---------------------------------------------------------------- yaml files

def _laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(8):
        prev, name = chr(97 + i), chr(98 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _experiment(**changes) -> str:
    return yaml.safe_dump({**TINY_EXPERIMENT, **changes})


YAML_CASES = [pytest.param(cmd, name, content, names, id=name) for cmd, name, content, names in [
    ("train", "dup.yaml", "train:\n  lr: 1.0e-3\n  lr: 2.0e-3\n", ["dup.yaml", "'lr' appears twice"]),
    ("train", "duptop.yaml", "train: {}\ntrain: {}\n", ["duptop.yaml", "'train' appears twice"]),
    ("train", "alias.yaml", "a: &a [0.9, 0.95]\ntrain:\n  betas: *a\n", ["alias.yaml", "aliases"]),
    ("train", "laughs.yaml", _laughs(), ["laughs.yaml", "aliases"]),
    ("train", "latin1.yaml", "name: jos\xe9\n".encode("latin-1"), ["latin1.yaml", "not UTF-8"]),
    ("train", "utf16.yaml", "name: x\n".encode("utf-16"), ["utf16.yaml", "not UTF-8"]),
    ("train", "binary.yaml", bytes(range(256)), ["binary.yaml"]),
    ("train", "list.yaml", "- model\n- train\n", ["list.yaml", "top level must be a mapping"]),
    ("train", "scalar.yaml", "just a string\n", ["scalar.yaml", "top level must be a mapping"]),
    ("train", "big.yaml", "name: big\n" + ("#" + "x" * 99 + "\n") * 50_000, ["big.yaml", "at most"]),
    ("train", "syntax.yaml", "train: [1, 2\n", ["syntax.yaml", "not valid YAML"]),
    ("train", "tabs.yaml", "train:\n\tlr: 1\n", ["tabs.yaml", "not valid YAML"]),
    ("train", "pyobj.yaml", "name: !!python/object/apply:os.system ['touch PWNED']\n", ["pyobj.yaml"]),
    ("train", "pyname.yaml", "name: !!python/name:os.system\n", ["pyname.yaml"]),
    ("train", "deep.yaml", "name: " + "[" * 20_000 + "]" * 20_000 + "\n", ["deep.yaml", "nested too deeply"]),
    ("train", "listkey.yaml", "? [a, b]\n: 1\n", ["listkey.yaml", "plain value"]),
    ("train", "nullsec.yaml", "model: null\n", ["model", "nullsec.yaml"]),
    ("train", "unknown.yaml", "trian:\n  lr: 1\n", ["trian", "did you mean train"]),
    ("train", "bytesname.yaml", "name: !!binary aGVsbG8=\n", ["name", "bytesname.yaml"]),
    ("train", "hugeint.yaml", "model:\n  d_model: 1.0e+400\n", ["model.d_model", "hugeint.yaml"]),
    ("run", "exp-variants.yaml", _experiment(variants=["a", "b"]), ["variants", "exp-variants.yaml"]),
    ("run", "exp-seeds.yaml", _experiment(seeds=0), ["exp-seeds.yaml", "seeds"]),
    ("run", "exp-badkey.yaml", _experiment(variants={"a": {"train.lrr": 1}}), ["train.lrr"]),
    ("run", "exp-claim.yaml", _experiment(claims=[{"id": "x"}]), ["claim"]),
    ("run", "exp-unknown.yaml", _experiment(variantz=1), ["variantz"]),
    ("run", "exp-base.yaml", _experiment(base={"model": {"d_model": 0}}), ["model.d_model"]),
    ("run", "exp-vname.yaml", _experiment(variants={"../x": {}}), ["'../x'"]),
    ("run", "exp-name.yaml", _experiment(name="../../evil"), ["'../../evil'", "one folder name"]),
    ("run", "exp-preset.yaml", _experiment(presets={"../up": {}}), ["'../up'"]),
    ("run", "exp-probe-figures.yaml", _experiment(probe_figures=["attn_sinkz"]),
     ["probe_figures", "'attn_sinkz' is not a probe", "allowed: act_kurtosis"]),
]]


@pytest.mark.parametrize("cmd,name,content,names", YAML_CASES)
def test_yaml_files(cmd, name, content, names, tmp_path):
    path = tmp_path / "cfg" / name
    path.parent.mkdir()
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    before = snapshot(tmp_path)
    args = ["train", path, f"out_dir={tmp_path / 'out'}", "train.steps=1"] if cmd == "train" else \
        ["run", path, "--out", tmp_path / "out", "--seeds", "1"]
    refused(invoke(*args), *names)
    assert changed(before, snapshot(tmp_path)) == []   # nothing written: no out/, no PWNED marker


def test_a_folder_named_like_a_yaml_file(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    refused(invoke("train", tmp_path / "dir.yaml", f"out_dir={tmp_path / 'out'}"), "dir.yaml")
    refused(invoke("run", tmp_path / "dir.yaml", "--out", tmp_path / "out"), "dir.yaml")
    assert snapshot(tmp_path) == {"dir.yaml": "dir"}


# ---------------------------------------------------------------- data files

NAMES = "\n".join(["anna", "bob", "carl", "dora", "emil", "fay", "gus", "hal"] * 20) + "\n"


def _write_data(folder: Path) -> None:
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    (folder / "good.txt").write_text(NAMES)
    gz = gzip.compress(NAMES.encode())
    (folder / "trunc.txt.gz").write_bytes(gz[: len(gz) // 2])
    (folder / "corrupt.txt.gz").write_bytes(gz[:10] + b"\x00garbage" * 20)
    (folder / "notgz.txt.gz").write_bytes(b"plain text, not gzip\n" * 5)
    pq.write_table(pa.table({"text": ["anna", "bob", "carl"] * 10}), folder / "good.parquet")
    pb = (folder / "good.parquet").read_bytes()
    (folder / "trunc.parquet").write_bytes(pb[: len(pb) // 2])
    (folder / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    pq.write_table(pa.table({"text": list(range(30))}), folder / "ints.parquet")
    pq.write_table(pa.table({"body": ["a"] * 30}), folder / "notext.parquet")
    (folder / "bad.jsonl").write_text('{"text": "anna"}\n{not json}\n')
    (folder / "nonstr.jsonl").write_text('{"text": "anna"}\n{"text": 5}\n')
    (folder / "latin1.txt").write_bytes("jos\xe9\nb\xe9a\n".encode("latin-1"))
    (folder / "empty.txt").write_text("")
    (folder / "one.txt").write_text("onlyone\n")
    (folder / "tiny.txt").write_text("ab\ncd\n")
    (folder / "x.zip").write_bytes(b"PK\x03\x04")
    (folder / "emptydir").mkdir()
    (folder / "cachefile").write_text("a file where a folder should be")


DATA_CASES = [pytest.param(o, names, id=i) for i, o, names in [
    ("trunc.txt.gz", ["data.source=text:{d}/trunc.txt.gz"], ["trunc.txt.gz", "truncated"]),
    ("corrupt.txt.gz", ["data.source=text:{d}/corrupt.txt.gz"], ["corrupt.txt.gz", "gzip"]),
    ("notgz.txt.gz", ["data.source=text:{d}/notgz.txt.gz"], ["notgz.txt.gz", "gzip"]),
    ("trunc.parquet", ["data.source=text:{d}/trunc.parquet"], ["trunc.parquet"]),
    ("corrupt.parquet", ["data.source=text:{d}/corrupt.parquet"], ["corrupt.parquet"]),
    ("ints.parquet", ["data.source=text:{d}/ints.parquet"], ["ints.parquet", "not strings"]),
    ("notext.parquet", ["data.source=text:{d}/notext.parquet"], ["notext.parquet", "no `text` column"]),
    ("bad.jsonl", ["data.source=text:{d}/bad.jsonl"], ["bad.jsonl:2"]),
    ("nonstr.jsonl", ["data.source=text:{d}/nonstr.jsonl"], ["nonstr.jsonl:2", "not a string"]),
    ("latin1.txt", ["data.source=text:{d}/latin1.txt"], ["latin1.txt", "not UTF-8"]),
    ("empty.txt", ["data.source=text:{d}/empty.txt"], ["empty.txt"]),
    ("one-document", ["data.source=text:{d}/one.txt"], ["one.txt", "at least 2"]),
    ("empty-folder", ["data.source=text:{d}/emptydir"], ["emptydir"]),
    ("zip", ["data.source=text:{d}/x.zip"], ["x.zip", "not a format read here"]),
    ("missing", ["data.source=text:{d}/nosuch.txt"], ["nosuch.txt", "no such file"]),
    ("val-source-truncated", ["data.source=text:{d}/good.txt", "data.val_source=text:{d}/trunc.txt.gz"],
     ["trunc.txt.gz"]),
    ("cache-dir-a-file", ["data.source=text:{d}/good.txt", "data.tokenizer=bpe", "data.bpe_vocab_size=300",
                          "data.cache_dir={d}/cachefile"], ["data.cache_dir", "cachefile", "is a file"]),
    ("block-larger-than-data", ["data.source=text:{d}/tiny.txt", "model.block_size=64"],
     ["tiny.txt", "model.block_size=64"]),
]]


@pytest.mark.parametrize("overrides,names", DATA_CASES)
def test_data_files(overrides, names, tmp_path):
    _write_data(tmp_path / "data")
    before = snapshot(tmp_path)
    refused(invoke("train", "debug", f"out_dir={tmp_path / 'out'}", "train.steps=1",
                   *(o.format(d=tmp_path / "data") for o in overrides)), *names)
    assert changed(before, snapshot(tmp_path)) == []    # the data untouched, no out/ folder, no cache


# ---------------------------------------------------------------- run directories

def _rundir_setup(tmp_path):
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "notes.txt").write_text("someone's notes")


RUNDIR_CASES = [pytest.param(args, names, id=i) for i, args, names in [
    ("out_dir-is-a-file", ["train", "debug", "out_dir={t}/afile"], ["afile", "Not a directory"]),
    ("out_dir-under-a-file", ["train", "debug", "out_dir={t}/afile/sub"], ["afile/sub"]),
    ("out_dir-unwritable", ["train", "debug", "out_dir=/sys/normlab-test"], ["/sys/normlab-test"]),
    ("run-dir-is-a-file", ["train", "debug", "out_dir={t}", "name=afile"], ["afile"]),
    ("users-folder", ["train", "debug", "out_dir={t}", "name=users"], ["users", "not a normlab run"]),
    ("users-folder-resume", ["train", "debug", "out_dir={t}", "name=users", "--resume"], ["not a normlab run"]),
    ("run-out-is-a-file", ["run", "prepost", "--out", "{t}/afile"], ["--out", "afile"]),
    ("run-out-under-a-file", ["run", "prepost", "--seeds", "1", "--out", "{t}/afile/sub"], ["afile/sub"]),
    ("run-out-unwritable", ["run", "prepost", "--seeds", "1", "--out", "/sys/normlab-test"], ["/sys/normlab-test"]),
    ("report-a-file", ["report", "{t}/afile"], ["afile"]),
    ("sample-a-file", ["sample", "{t}/afile"], ["afile"]),
    ("sample-users-folder", ["sample", "{t}/users"], ["users", "not a run directory"]),
    ("replay-users-folder", ["replay", "{t}/users"], ["users", "no forensics.json"]),
    ("push-users-folder", ["push", "{t}/users", "alice/x"], ["users", "neither a finished run"]),
]]


@pytest.mark.parametrize("args,names", RUNDIR_CASES)
def test_run_directories(args, names, tmp_path):
    _rundir_setup(tmp_path)
    before = snapshot(tmp_path)
    refused(invoke(*(a.format(t=tmp_path) for a in args)), *names)
    assert changed(before, snapshot(tmp_path)) == []
    assert not (tmp_path / "users" / ".lock").exists()    # not even the lock file in someone's folder


def _latest(run: Path) -> Path:
    return run / "checkpoints" / "latest"


LATEST_EDITS = {
    "empty": lambda run: _latest(run).write_text(""),
    "dangling": lambda run: _latest(run).write_text("step_999999\n"),
    "hand-edited": lambda run: _latest(run).write_text("the last one\n"),
    "outside": lambda run: _latest(run).write_text("../../../elsewhere/checkpoints/step_000006\n"),
    "missing-newest-incomplete": lambda run: (_latest(run).unlink(), max(
        (run / "checkpoints").glob("step_*")).joinpath("model.safetensors").unlink()),
    "a-folder": lambda run: (_latest(run).unlink(), _latest(run).mkdir()),
}
LATEST_CASES = [pytest.param(cmd, edit, id=f"{cmd}-latest-{edit}") for cmd in ("resume", "sample")
                for edit in LATEST_EDITS] + [pytest.param("resume", "no-state", id="resume-weights-only-checkpoint")]


@pytest.mark.parametrize("cmd,edit", LATEST_CASES)
def test_checkpoint_pointer(cmd, edit, runs, tmp_path):
    run = tmp_path / ("part" if cmd == "resume" else "done")
    shutil.copytree(runs / run.name, run)
    if edit == "no-state":   # a pulled run without --with-optimizer cannot be resumed
        ckpt = run / "checkpoints" / _latest(run).read_text().strip()
        (ckpt / "state.safetensors").unlink()
        names = ["incomplete checkpoint", "state.safetensors"]
    else:
        LATEST_EDITS[edit](run)
        names = ["incomplete checkpoint", "model.safetensors"] if edit.startswith("missing") else ["checkpoints/latest"]
    before = snapshot(tmp_path)
    refused(invoke(*_command(cmd, tmp_path)), *names)
    assert changed(before, snapshot(tmp_path)) == []


# ---------------------------------------------------------------- corrupt run-directory files

def _command(cmd: str, root: Path) -> list:
    return {"resume": resume_args(root),
            "sample": ["sample", root / "done"],
            "report": ["report", root, "--figures", "all"],   # all: it reads every probes/step_N.npz too
            "replay": ["replay", root / "div"]}[cmd]


READS = {   # command -> (run it reads, files of that run it reads); {ck} = the checkpoint `latest` names
    "resume": ("part", ["{ck}/model.safetensors", "{ck}/state.safetensors", "{ck}/state.json", "checkpoints/latest",
                        "meta.json", "config.yaml", "metrics.jsonl"]),
    "sample": ("done", ["{ck}/model.safetensors", "checkpoints/latest", "config.yaml", "tokenizer.json"]),
    "report": ("done", ["summary.json", "metrics.jsonl", "config.yaml", "probes/step_000003.npz", "../experiment.json"]),
    "replay": ("div", ["forensics.json", "forensics.npz", "forensics/last_good/model.safetensors",
                       "forensics/last_good/state.safetensors", "forensics/last_good/state.json", "config.yaml",
                       "meta.json"]),
}


def damage(path: Path, mode: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"garbage": GARBAGE, "truncated": data[: len(data) // 2], "empty": b""}[mode])


def _json_edit(rel: str, **changes):
    def edit(run: Path):
        path = run / rel
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return edit


def _write(rel: str, content):
    def edit(run: Path):
        (run / rel).write_bytes(content.encode() if isinstance(content, str) else content)
    return edit


def _edit_config(**model):
    def edit(run: Path):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["model"].update(model)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return edit


def _middle_line_broken(run: Path):
    lines = (run / "metrics.jsonl").read_bytes().split(b"\n")
    lines[2] = b'{"step": 2, "loss": 3.2, "lr'
    (run / "metrics.jsonl").write_bytes(b"\n".join(lines))


def _torn_last_line(run: Path):
    data = (run / "metrics.jsonl").read_bytes()
    (run / "metrics.jsonl").write_bytes(data + data.splitlines(keepends=True)[-1][:20])   # no newline at the end


def _wrong_weights(run: Path):
    from safetensors.torch import save_file
    import torch

    ckpt = run / "checkpoints" / _latest(run).read_text().strip()
    save_file({"wte.weight": torch.zeros(3, 3)}, str(ckpt / "model.safetensors"))


def _npz_without_batches(run: Path):
    np.savez(run / "forensics.npz", modules=np.array(["x"]))


def _npz_indices_out_of_range(run: Path):
    with np.load(run / "forensics.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays = {k: (np.full_like(v, 10 ** 9) if k.startswith("batch_index/") else v) for k, v in arrays.items()}
    np.savez(run / "forensics.npz", **arrays)


HAND_EDITS = [  # (command, id, edit of the run folder, names in the line)
    ("resume", "state.json-step-negative", _json_edit("checkpoints/step_000003/state.json", step=-1), ["state.json", "step"]),
    ("resume", "state.json-format-99", _json_edit("checkpoints/step_000003/state.json", format=99), ["state.json", "format"]),
    ("resume", "state.json-more-lines", _json_edit("checkpoints/step_000003/state.json", metrics_lines=10 ** 6),
     ["metrics.jsonl", "complete lines"]),
    ("resume", "state.json-params-disagree", _json_edit("checkpoints/step_000003/state.json", optimizer_params=["x"]),
     ["disagree"]),
    ("resume", "state.json-a-list", _write("checkpoints/step_000003/state.json", "[1, 2]"), ["state.json"]),
    ("resume", "meta.json-a-list", _write("meta.json", "[]"), ["meta.json"]),
    ("resume", "metrics-middle-line", _middle_line_broken, ["metrics.jsonl:3"]),
    ("resume", "config-architecture-edited", _edit_config(d_model=32), ["cannot resume", "model.d_model: 32 -> 16"]),
    ("resume", "legacy-state.pt", lambda run: ((run / "checkpoints/step_000003/state.safetensors").unlink(),
                                               (run / "checkpoints/step_000003/state.pt").write_bytes(b"x")),
     ["state.pt", "pickle"]),
    ("sample", "weights-of-another-model", _wrong_weights, ["model.safetensors"]),
    ("sample", "tokenizer-duplicate-chars", _write("tokenizer.json", '{"kind": "char", "chars": ["a", "a"]}'),
     ["tokenizer.json"]),
    ("sample", "config-n_head-3", _edit_config(n_head=3), ["config.yaml", "model.n_head"]),
    ("sample", "config-unknown-kind", _edit_config(norm={"kind": "nosuch"}), ["config.yaml", "model.norm"]),
    ("report", "metrics-torn-last-line", _torn_last_line, ["metrics.jsonl", "step records"]),
    ("report", "summary.json-a-list", _write("summary.json", "[]"), ["summary.json"]),
    ("report", "experiment.json-runs-outside", _write("../experiment.json", json.dumps(
        {"name": "x", "variants": ["done"], "runs": [{"variant": "done", "seed": 0, "dir": "../../etc"}]})),
     ["experiment.json", "outside"]),
    ("report", "experiment.json-runs-not-a-list", _write("../experiment.json", '{"runs": 3}'), ["experiment.json"]),
    ("replay", "checkpoint-outside", _json_edit("forensics.json", checkpoint="../../elsewhere"),
     ["forensics.json", "outside"]),
    ("replay", "checkpoint-absolute", _json_edit("forensics.json", checkpoint="/etc"), ["forensics.json", "'/etc'"]),
    ("replay", "last-good-after-step", _json_edit("forensics.json", last_good_step=100), ["forensics.json"]),
    ("replay", "npz-without-batches", _npz_without_batches, ["forensics.npz", "batch index"]),
    ("replay", "npz-indices-out-of-range", _npz_indices_out_of_range, ["forensics.npz", "outside this run's data"]),
]


def _case_root(cmd: str, runs: Path, tmp_path: Path) -> Path:
    run_name = READS[cmd][0]
    shutil.copytree(runs / run_name, tmp_path / run_name)
    if cmd == "report":
        (tmp_path / "experiment.json").write_text(json.dumps({
            "name": "tiny", "title": "tiny", "variants": ["done"], "seeds": [0],
            "runs": [{"variant": "done", "seed": 0, "dir": "done"}]}))
    return tmp_path / run_name


def _resolve(run: Path, rel: str) -> Path:
    return (run / rel.format(ck=f"checkpoints/{_latest(run).read_text().strip()}" if _latest(run).exists() else ""))


FILE_CASES = [pytest.param(cmd, rel, mode, id=f"{cmd}-{rel.replace('{ck}/', '')}-{mode}")
              for cmd, (_, rels) in READS.items() for rel in rels for mode in MODES]


@pytest.mark.parametrize("cmd,rel,mode", FILE_CASES)
def test_corrupt_file(cmd, rel, mode, runs, tmp_path):
    run = _case_root(cmd, runs, tmp_path)
    path = _resolve(run, rel)
    damage(path, mode)
    before = snapshot(tmp_path)
    refused(invoke(*_command(cmd, tmp_path)), path.name)
    assert changed(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("cmd,edit,names", [pytest.param(c, e, n, id=f"{c}-{i}") for c, i, e, n in HAND_EDITS])
def test_hand_edited_file(cmd, edit, names, runs, tmp_path):
    run = _case_root(cmd, runs, tmp_path)
    edit(run)
    before = snapshot(tmp_path)
    refused(invoke(*_command(cmd, tmp_path)), *names)
    assert changed(before, snapshot(tmp_path)) == []


def test_a_torn_last_line_is_what_a_kill_leaves_and_resume_drops_it(runs, tmp_path):
    """Not bad input: a kill during a write tears the last line, and the checkpoint never counted it."""
    run = _case_root("resume", runs, tmp_path)
    _torn_last_line(run)
    r = invoke(*_command("resume", tmp_path))
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output + r.stderr
    done = (runs / "done" / "metrics.jsonl").read_bytes()
    assert (run / "metrics.jsonl").read_bytes() == done    # as if it had never stopped


# ---------------------------------------------------------------- `normlab run` re-runs over damaged runs

SWEEP_PARENT = [pytest.param(rel, mode, id=f"{rel}-{mode}") for rel in ("config.yaml", "summary.json", "metrics.jsonl")
                for mode in MODES] + [pytest.param("metrics.jsonl", "torn", id="metrics.jsonl-torn")]


@pytest.mark.parametrize("rel,mode", SWEEP_PARENT)
def test_run_rerun_over_a_damaged_finished_run(rel, mode, sweep, tmp_path):
    spec, out = sweep
    shutil.copytree(out, tmp_path / "out")
    run = tmp_path / "out" / "tiny" / "a-seed0"
    _torn_last_line(run) if mode == "torn" else damage(run / rel, mode)
    before = snapshot(tmp_path)
    refused(invoke("run", spec, "--out", tmp_path / "out"), rel)
    assert changed(before, snapshot(tmp_path)) == []     # refused before it trained or reported anything


SWEEP_WORKER = [pytest.param(rel, mode, id=f"{rel}-{mode}",   # each starts a worker process: one in the default run
                             marks=() if (rel, mode) == ("{ck}/model.safetensors", "truncated") else pytest.mark.slow)
                for rel in ("{ck}/model.safetensors", "{ck}/state.safetensors", "{ck}/state.json", "checkpoints/latest")
                for mode in MODES]


@pytest.mark.parametrize("rel,mode", SWEEP_WORKER)
def test_run_rerun_over_a_damaged_partial_run(rel, mode, sweep, tmp_path):
    """The worker meets the damage: the run is recorded as failed, the sweep exits 1 naming file and run."""
    spec, out = sweep
    shutil.copytree(out, tmp_path / "out")
    run = tmp_path / "out" / "tiny" / "a-seed0"
    make_partial(run)
    path = _resolve(run, rel)
    damage(path, mode)
    before = snapshot(run)
    refused(invoke("run", spec, "--out", tmp_path / "out"), "a-seed0", path.name, code=1)
    assert changed(before, snapshot(run)) == ["summary.json"]       # only normlab's record of the failure
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"


# ---------------------------------------------------------------- real processes: the exit code a shell sees

def _normlab(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "NORMLAB_DEBUG"}
    return subprocess.run([sys.executable, "-m", "normlab", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize("args,name", [
    (["train", "debug", "train.lr=nan"], "train.lr"),
    (["sample", ".", "--n", "0"], "--n"),
    (["run", "nosuch"], "nosuch"),
    (["resume"], "state.safetensors"),
], ids=["train-nan", "sample-n-0", "run-unknown", "resume-corrupt-state"])
def test_real_process_exit_codes(args, name, runs, tmp_path):
    if args == ["resume"]:
        run = _case_root("resume", runs, tmp_path)
        damage(_resolve(run, "{ck}/state.safetensors"), "truncated")
        args = _command("resume", tmp_path)
    p = _normlab(*args, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr + p.stdout, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert name in lines[-1] and (len(lines) == 1 or lines[0].startswith("Usage:")), p.stderr


def test_the_docstring_counts_are_the_cases():
    import re

    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^  (\w[\w ]*?)\s{2,}(\d+)  ", __doc__, re.M)}
    assert counts == {"cli arguments": len(CLI_CASES) + 2, "schema overrides": len(SCHEMA_CASES) + len(NUMERIC),
                      "other overrides": len(OVERRIDE_CASES), "yaml files": len(YAML_CASES) + 1,
                      "data files": len(DATA_CASES), "run directories": len(RUNDIR_CASES) + len(LATEST_CASES),
                      "corrupt run files": len(FILE_CASES) + len(HAND_EDITS) + 1 + len(SWEEP_PARENT) + len(SWEEP_WORKER),
                      "real processes": 4}
    assert sum(counts.values()) >= 250
