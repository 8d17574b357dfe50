"""Resume refuses a run whose text changed under the same config (meta.json keeps the data's fingerprint):
the resumed half would train on other documents than the first half, and nothing else would say so."""
import json

import pytest

import normlab as nl
from normlab.config import ConfigError

ARGS = ["train.steps=12", "train.ckpt_every=4", "train.eval_every=100", "probes.every=0", "sample.n=1", "train.threads=1"]


def _cfg(tmp_path, source):
    return nl.load_config("debug", [f"data.source=text:{source}", f"out_dir={tmp_path}", "name=r", *ARGS])


def test_a_changed_text_file_refuses_resume_and_the_restored_one_resumes(tmp_path):
    text = tmp_path / "corpus.txt"
    original = "\n".join(f"name{i} anna bob carl dora" for i in range(200)) + "\n"
    text.write_text(original)
    nl.train(_cfg(tmp_path, text), until_step=8)
    run = tmp_path / "r"
    first = json.loads((run / "meta.json").read_text())["data"]
    assert first and len(first) == 20
    before = (run / "metrics.jsonl").read_bytes()

    text.write_text(original.replace("anna", "anne"))       # same size, other text
    with pytest.raises(ConfigError, match=r"the text behind data.source=text:.*changed since it started"):
        nl.train(_cfg(tmp_path, text), resume=True)
    assert (run / "metrics.jsonl").read_bytes() == before   # the refusal wrote nothing
    assert json.loads((run / "meta.json").read_text())["data"] == first

    text.write_text(original)
    summary = nl.train(_cfg(tmp_path, text), resume=True)
    assert summary["status"] == "complete"
    assert json.loads((run / "meta.json").read_text())["data"] == first


def test_the_fingerprint_follows_the_text_not_the_path(tmp_path):
    from normlab.data.batching import build_corpus

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one two\nthree four\n" * 20)
    b.write_text("one two\nthree five\n" * 20)
    fa, fb = (build_corpus(_cfg(tmp_path, p).data, 8).fingerprint for p in (a, b))
    assert fa != fb and build_corpus(_cfg(tmp_path, a).data, 8).fingerprint == fa
    assert build_corpus(nl.load_config("debug").data, 8).fingerprint   # the embedded corpus has one too
