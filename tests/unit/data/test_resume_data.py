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


@pytest.mark.parametrize("extra", [[], ["data.val_source=text:{val}"],
                                   ["data.tokenizer=bpe", "data.bpe_vocab_size=260", "data.cache_dir={tmp}/cache"]])
def test_the_sources_alone_give_the_corpus_fingerprint(tmp_path, extra):
    """data_fingerprint (what a sweep checks its finished runs with, without tokenizing) = build_corpus's."""
    from normlab.data.batching import build_corpus, data_fingerprint

    (tmp_path / "a.txt").write_text("\n".join(f"anna{i} bob" for i in range(300)) + "\n")
    (tmp_path / "v.txt").write_text("\n".join(f"carl{i} dora" for i in range(100)) + "\n")
    cfg = nl.load_config("debug", ["data.source=text:" + str(tmp_path / "a.txt"),
                                   *(e.format(val=tmp_path / "v.txt", tmp=tmp_path) for e in extra)])
    assert data_fingerprint(cfg.data) == build_corpus(cfg.data, 8).fingerprint
    names = nl.load_config("debug").data
    assert data_fingerprint(names) == build_corpus(names, 8).fingerprint


def test_a_sweep_refuses_finished_runs_on_text_that_changed_and_reuses_them_once_restored(tmp_path):
    from normlab.experiments.run import run_experiment

    text = tmp_path / "names.txt"
    original = "\n".join(f"{n}{i}" for i in range(150) for n in ("anna", "bob", "carl")) + "\n"
    text.write_text(original)
    args = ["train.steps=6", "probes.every=0", "sample.n=1", f"data.source=text:{text}"]
    out = str(tmp_path / "sweep")
    first = run_experiment("prepost", args, seeds=1, jobs=1, out=out, echo=lambda line: None)
    summaries = {p.parent.name: p.read_bytes() for p in first.exp_dir.glob("*/summary.json")}
    assert len(summaries) == 3

    text.write_text(original.replace("anna", "anne"))       # edited after the sweep finished
    with pytest.raises(ConfigError, match=r"was trained on other text: the file behind data.source=text:.* changed"):
        run_experiment("prepost", args, seeds=1, jobs=1, out=out, echo=lambda line: None)
    assert {p.parent.name: p.read_bytes() for p in first.exp_dir.glob("*/summary.json")} == summaries  # nothing retrained

    text.write_text(original)
    lines = []
    run_experiment("prepost", args, seeds=1, jobs=1, out=out, echo=lines.append)
    assert any("0 to train, 3 finished already" in line for line in lines), lines
