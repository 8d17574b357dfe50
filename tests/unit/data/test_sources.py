"""Sources without the network: local formats, and the HF code paths on files written here."""
import gzip
import json
import sys

import pytest

from normlab.config import ConfigError
from normlab.data import hub, open_source
from normlab.data.corpora import load_documents

STORIES = ["Once upon a time there was a cat.\nIt sat.", "Tom ran home. The end.", "A dog barked twice."]


def test_marker_separated_text_keeps_whole_documents(tmp_path):
    path = tmp_path / "stories.txt"
    path.write_text("<|endoftext|>\n".join(STORIES) + "\n<|endoftext|>\n")
    assert load_documents(f"text:{path}") == STORIES


def test_gzip_jsonl_and_parquet_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with gzip.open(tmp_path / "a.txt.gz", "wt") as f:
        f.write("line one\n\nline two\n")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": s, "id": i}) + "\n" for i, s in enumerate(STORIES)))
    pq.write_table(pa.table({"text": ["pq one", "", "pq two"]}), tmp_path / "c.parquet")
    assert load_documents(f"text:{tmp_path}") == ["line one", "line two", *STORIES, "pq one", "pq two"]


def test_bad_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ConfigError, match=r"x.jsonl:2: the `text` field is missing"):
        load_documents(f"text:{tmp_path / 'x.jsonl'}")


def test_text_fingerprint_follows_the_content(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a\nb\n")
    first = open_source(f"text:{path}").fingerprint
    assert open_source(f"text:{path}").fingerprint == first
    path.write_text("a\nc\n")
    assert open_source(f"text:{path}").fingerprint != first


@pytest.fixture
def offline(monkeypatch):
    """Both libraries in offline mode, so a test can never reach the network."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_datasets_path_reads_train_and_validation_splits(tmp_path, monkeypatch, offline):
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": STORIES[:2]}), repo / "data" / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"text": [STORIES[2], "  "]}), repo / "data" / "validation-00000-of-00001.parquet")
    spec = hub.HubSource("tinystories", str(repo), "fixture")
    monkeypatch.setitem(hub.HUB_SOURCES, "tinystories", spec)
    src = open_source("tinystories", tmp_path / "cache")
    assert list(src.splits["train"]()) == STORIES[:2]
    assert list(src.splits["validation"]()) == [STORIES[2]]
    assert src.fingerprint and (tmp_path / "cache" / "hf").exists()   # datasets cached under cache_dir/hf


def _populate_hub_cache(cache, repo, files: dict[str, bytes]) -> None:
    """The huggingface_hub cache layout: refs/main -> commit, snapshots/<commit>/<file>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / "hf" / f"datasets--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)


def test_hub_file_path_reads_a_prepopulated_cache_offline(tmp_path, offline):
    text = "<|endoftext|>".join(STORIES).encode()
    _populate_hub_cache(tmp_path, "stanford-cs336/owt-sample",
                        {"owt_train.txt.gz": gzip.compress(text), "owt_valid.txt.gz": gzip.compress(b"valid doc")})
    src = open_source("owt-sample", tmp_path)
    assert list(src.splits["train"]()) == STORIES
    assert list(src.splits["validation"]()) == ["valid doc"]


@pytest.mark.parametrize("name", ["owt-sample", "tinystories", "wikitext2"])
def test_offline_error_names_source_cache_and_alternative(tmp_path, offline, name):
    with pytest.raises(ConfigError) as err:
        open_source(name, tmp_path / "empty")
    msg = str(err.value)
    assert f"data.source={name}" in msg and str(tmp_path / "empty" / "hf") in msg and "text:<path>" in msg
    assert "Traceback" not in msg


def test_unreachable_hub_reads_the_cache_at_once_and_says_why(tmp_path, monkeypatch):
    """Online mode, but the Hub's host does not answer: the libraries are switched to offline mode
    for the call (no ~25 s of retries), a filled cache still loads, and the flags are restored."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_unreachable", lambda timeout=3.0: "hub.invalid:443 did not answer (gaierror)")
    _populate_hub_cache(tmp_path, "stanford-cs336/owt-sample",
                        {"owt_train.txt.gz": gzip.compress(b"a doc"), "owt_valid.txt.gz": gzip.compress(b"v")})
    assert list(open_source("owt-sample", tmp_path).splits["train"]()) == ["a doc"]
    with pytest.raises(ConfigError, match="hub.invalid:443 did not answer .*so only the cache was read"):
        open_source("tinystories", tmp_path / "empty")
    assert constants.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False


def test_hub_unreachable_reports_a_closed_port(monkeypatch):
    import socket

    from huggingface_hub import constants

    with socket.socket() as s:          # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    assert hub.hub_unreachable(timeout=1.0).startswith(f"127.0.0.1:{port} did not answer")


@pytest.mark.parametrize("name, modules, package", [
    ("tinystories", ["datasets"], "datasets"),
    ("owt-sample", ["huggingface_hub", "huggingface_hub.constants"], "huggingface_hub")])
def test_hub_sources_without_the_hf_extra(tmp_path, monkeypatch, name, modules, package):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError) as err:
        open_source(name, tmp_path)
    assert str(err.value) == f"data.source={name} needs the {package} package: pip install 'normlab[hf]'"


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["one", "two"]}), path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError) as err:
        load_documents(f"text:{path}")
    assert str(err.value) == f"reading {path} (.parquet) needs the pyarrow package: pip install 'normlab[hf]'"


_NUMBERED = gzip.compress("".join(f"document {i}<|endoftext|>" for i in range(5000)).encode())


@pytest.mark.parametrize("data, why", [(gzip.compress("café".encode("latin-1")), "is not UTF-8 text"),
                                       (_NUMBERED[: len(_NUMBERED) // 2], "the gzip data is truncated")],
                         ids=["latin-1", "truncated"])
def test_a_bad_cached_hub_file_names_the_file(tmp_path, offline, data, why):
    _populate_hub_cache(tmp_path, "stanford-cs336/owt-sample",
                        {"owt_train.txt.gz": data, "owt_valid.txt.gz": gzip.compress(b"v")})
    src = open_source("owt-sample", tmp_path)
    with pytest.raises(ConfigError) as err:
        list(src.splits["train"]())
    assert "owt_train.txt.gz" in str(err.value) and why in str(err.value)
