"""Bad user files and a damaged cache: each is one ConfigError line naming the file, never a traceback
and never a silent wrong read."""
import builtins
import errno
import gzip
import json
import os

import pytest

from normlab.config import ConfigError, DataConfig, load_config
from normlab.data import build_corpus, load_documents, open_source, prepare_bpe

LINES = "".join(f"line number {i} of the text\n" for i in range(2000))


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def _bpe_cfg(tmp_path, source, *overrides):
    return load_config("debug", ["data.tokenizer=bpe", f"data.source={source}", "data.bpe_vocab_size=300",
                                 f"data.cache_dir={tmp_path / 'cache'}", *overrides]).data


def test_truncated_gzip_is_refused_not_read_as_whole(tmp_path):
    data = gzip.compress(LINES.encode())
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError) as err:
        load_documents(f"text:{path}")
    assert _one_line(err) == (f"{path}: the gzip data is truncated (it ends before its end marker); copy it again")


def test_file_named_gz_that_is_not_gzip(tmp_path):
    path = tmp_path / "plain.txt.gz"
    path.write_text(LINES)
    with pytest.raises(ConfigError, match=r"plain.txt.gz: not valid gzip data \(Not a gzipped file"):
        load_documents(f"text:{path}")


@pytest.mark.parametrize("payload", [b"", b"PAR1 this is not a parquet file at all"])
def test_corrupt_parquet_names_the_file(tmp_path, payload):
    path = tmp_path / "bad.parquet"
    path.write_bytes(payload)
    with pytest.raises(ConfigError) as err:
        load_documents(f"text:{path}")
    assert _one_line(err).startswith(f"{path}: not a readable parquet file (")


def test_parquet_text_column_must_hold_strings(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3]}), path)
    with pytest.raises(ConfigError) as err:
        load_documents(f"text:{path}")
    assert _one_line(err) == f"{path}: the `text` column holds int64, not strings"


@pytest.mark.parametrize("name", ["latin1.txt", "latin1.txt.gz", "latin1.jsonl"])
def test_non_utf8_text_in_every_format(tmp_path, name):
    raw = '{"text": "caf\xe9"}\n' if name.endswith(".jsonl") else "caf\xe9 au lait\nline two\n"
    data = raw.encode("latin-1")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(ConfigError) as err:
        load_documents(f"text:{path}")
    assert _one_line(err).startswith(f"{path} is not UTF-8 text (invalid continuation byte)")


def test_empty_file_and_folder_of_empty_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ConfigError, match="need at least 2 non-empty documents, found 0"):
        build_corpus(DataConfig(source=f"text:{empty}"), block_size=8)
    with pytest.raises(ConfigError, match=r"the train split has no documents \(an empty file or folder"):
        prepare_bpe(_bpe_cfg(tmp_path, f"text:{empty}"))
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.jsonl").write_text("")
    (folder / "b.txt.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(ConfigError, match="found 0"):
        build_corpus(DataConfig(source=f"text:{folder}"), block_size=8)


def test_folder_without_text_files_and_empty_path(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match=r"the folder has no \.txt, \.txt\.gz, \.jsonl, \.parquet files"):
        open_source(f"text:{tmp_path}")
    # `text:` alone used to read the working directory, recursively
    with pytest.raises(ConfigError, match=r"^data.source=text: needs a path: text:<file or folder>$"):
        open_source("text:")


@pytest.mark.parametrize("name", ["corpus.jsonl.gz", "corpus.json", "corpus.txt.bz2"])
def test_formats_that_would_be_misread_as_plain_text_are_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress(b'{"text": "a"}\n') if name.endswith(".gz") else b'{"text": "a"}\n')
    with pytest.raises(ConfigError, match=f"{name} is not a format read here; use .txt, .txt.gz, .jsonl, .parquet"):
        open_source(f"text:{path}")


@pytest.fixture
def denied(monkeypatch):
    """Permission denied on the paths added to the returned set (chmod does not stop root, who runs CI)."""
    paths, real_open, real_scandir = set(), builtins.open, os.scandir

    def fake_open(file, *args, **kwargs):
        if str(file) in paths:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def fake_scandir(path="."):
        if str(path) in paths:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "scandir", fake_scandir)
    return paths


def test_unreadable_file_names_it(tmp_path, denied):
    path = tmp_path / "secret.txt"
    path.write_text(LINES)
    denied.add(str(path))
    with pytest.raises(ConfigError) as err:
        build_corpus(DataConfig(source=f"text:{path}"), block_size=8)
    assert _one_line(err) == f"{path} cannot be read (Permission denied)"


def test_unreadable_subfolder_is_reported_not_skipped(tmp_path, denied):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("three\n")
    denied.add(str(tmp_path / "sub"))
    with pytest.raises(ConfigError) as err:
        load_documents(f"text:{tmp_path}")
    assert _one_line(err) == f"data.source=text: the folder {tmp_path / 'sub'} cannot be read (Permission denied)"


def test_cache_dir_that_is_a_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(LINES)
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError) as err:
        prepare_bpe(_bpe_cfg(tmp_path, f"text:{path}"))
    assert _one_line(err).startswith(f"data.cache_dir={blocker} is a file, not a folder")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        open_source("tinystories", blocker)   # the Hub download cache, before any network access


@pytest.mark.parametrize("damage", ["meta.json", "tokenizer.json", "train.bin", "meta-keys"])
def test_damaged_token_cache_is_rebuilt(tmp_path, damage):
    path = tmp_path / "corpus.txt"
    path.write_text(LINES)
    tok, stats, folder = prepare_bpe(_bpe_cfg(tmp_path, f"text:{path}"))
    whole = {f: (folder / f).read_bytes() for f in ("meta.json", "tokenizer.json", "train.bin", "val.bin")}
    if damage == "meta-keys":
        (folder / "meta.json").write_text(json.dumps({"train": {"dtype": "uint16"}}))
    else:
        (folder / damage).write_bytes(whole[damage][: len(whole[damage]) // 2])   # a copy cut short
    tok2, stats2, folder2 = prepare_bpe(_bpe_cfg(tmp_path, f"text:{path}"))
    assert folder2 == folder and stats2 == stats and tok2.encode("line number 7") == tok.encode("line number 7")
    assert {f: (folder / f).read_bytes() for f in whole} == whole


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_block_size_larger_than_the_data(tmp_path, tokenizer):
    path = tmp_path / "small.txt"
    path.write_text("abc\nde\nfgh\n")
    overrides = ["data.val_frac=0.34"] + (["data.tokenizer=bpe", "data.bpe_vocab_size=260",
                                           f"data.cache_dir={tmp_path / 'cache'}"] if tokenizer == "bpe" else [])
    cfg = load_config("debug", [f"data.source=text:{path}", *overrides]).data
    with pytest.raises(ConfigError) as err:
        build_corpus(cfg, block_size=64)
    msg = _one_line(err)
    assert "the train split" in msg and "model.block_size=64 needs at least 65" in msg
    n_train = int(msg.split(" has ")[1].split(" tokens")[0])
    assert 0 < n_train < 65
