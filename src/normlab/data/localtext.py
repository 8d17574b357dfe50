"""`text:<path>`: documents from a local file or folder, streamed (a corpus may exceed memory).

Formats by suffix: `.txt` (and `.gz` of it), `.jsonl` (one JSON object per line, field `text`),
`.parquet` (column `text`, read batch by batch with pyarrow). A text file whose first MiB holds
the `<|endoftext|>` marker (TinyStories, OpenWebText dumps) has one document per marker-separated
chunk; any other text file has one document per non-empty line (names lists, WikiText lines).
A file that cannot be read as its name says (truncated or corrupt gzip or parquet, not UTF-8,
permission denied) is a ConfigError naming it, raised while reading: a bad file is never read
as if it were whole, whichever split or cache step reads it first.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..config import ConfigError
from .errors import first_line, require

MARKER = "<|endoftext|>"
SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".parquet")
# read as plain text these would give documents of compressed bytes or JSON syntax: refused by name
_NOT_TEXT = (".gz", ".bz2", ".xz", ".zst", ".zip", ".json")
_CHUNK = 1 << 20


def unreadable(path: Path, err: Exception) -> ConfigError:
    """The one line for a file that does not read as what its name says."""
    if isinstance(err, UnicodeDecodeError):
        return ConfigError(f"{path} is not UTF-8 text ({err.reason}); re-encode it as UTF-8")
    if isinstance(err, EOFError):   # gzip: the stream stops before its end-of-stream marker
        return ConfigError(f"{path}: the gzip data is truncated (it ends before its end marker); copy it again")
    if isinstance(err, (gzip.BadGzipFile, zlib.error)):
        return ConfigError(f"{path}: not valid gzip data ({first_line(err)}); a .txt.gz must be gzipped UTF-8 text")
    return ConfigError(f"{path} cannot be read ({getattr(err, 'strerror', None) or first_line(err)})")


@contextmanager
def reading(path: Path):
    """Turn the errors of reading `path` (around a generator's body too) into `unreadable(path, err)`."""
    try:
        yield
    except (UnicodeDecodeError, EOFError, OSError, zlib.error) as err:
        raise unreadable(path, err) from None


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _marker_docs(f: io.TextIOBase) -> Iterator[str]:
    tail = ""
    while chunk := f.read(_CHUNK):
        parts = (tail + chunk).split(MARKER)
        tail = parts.pop()
        yield from (p.strip() for p in parts if p.strip())
    if tail.strip():
        yield tail.strip()


def iter_text_file(path: Path) -> Iterator[str]:
    """Documents of one .txt / .txt.gz file: marker-separated chunks, or non-empty lines."""
    with reading(path):
        with _open_text(path) as f:
            head = f.read(_CHUNK)
        with _open_text(path) as f:
            if MARKER in head:
                yield from _marker_docs(f)
            else:
                yield from (line.strip() for line in f if line.strip())


def _iter_jsonl(path: Path) -> Iterator[str]:
    with reading(path), open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line).get("text")
            except (json.JSONDecodeError, AttributeError, RecursionError):
                raise ConfigError(f"{path}:{n}: not a JSON object with a `text` field") from None
            if not isinstance(text, str):
                raise ConfigError(f"{path}:{n}: the `text` field is missing or not a string")
            if text.strip():
                yield text.strip()


def _is_text_type(pa, t) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t)


def _iter_parquet(path: Path) -> Iterator[str]:
    pa = require("pyarrow", f"reading {path} (.parquet)")
    pq = require("pyarrow.parquet", f"reading {path} (.parquet)")
    with reading(path):
        try:
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            if "text" not in names:
                raise ConfigError(f"{path}: no `text` column (columns: {', '.join(names)})")
            kind = pf.schema_arrow.field("text").type
            if not _is_text_type(pa, kind):
                raise ConfigError(f"{path}: the `text` column holds {kind}, not strings")
            for batch in pf.iter_batches(columns=["text"], batch_size=4096):
                yield from (t.strip() for t in batch.column(0).to_pylist() if t and t.strip())
        except pa.ArrowException as err:   # ArrowInvalid: not parquet, truncated, a corrupt page
            raise ConfigError(f"{path}: not a readable parquet file ({first_line(err)})") from None


def iter_file(path: Path) -> Iterator[str]:
    if path.name.endswith(".parquet"):
        return _iter_parquet(path)
    if path.name.endswith(".jsonl"):
        return _iter_jsonl(path)
    return iter_text_file(path)


def _walk_error(err: OSError):
    raise ConfigError(f"data.source=text: the folder {err.filename} cannot be read ({err.strerror})")


def text_files(path_str: str) -> list[Path]:
    """The files `text:<path>` stands for (sorted, so the document order is fixed)."""
    if not path_str.strip():
        raise ConfigError("data.source=text: needs a path: text:<file or folder>")
    path = Path(path_str).expanduser()
    if path.is_dir():
        # os.walk reports an unreadable subfolder (rglob would skip it without a word)
        files = sorted(Path(root) / name for root, _, names in os.walk(path, onerror=_walk_error)
                       for name in names if name.endswith(SUFFIXES) and (Path(root) / name).is_file())
        if not files:
            raise ConfigError(f"data.source=text:{path_str}: the folder has no {', '.join(SUFFIXES)} files")
        return files
    if path.is_file():
        if path.name.endswith(_NOT_TEXT) and not path.name.endswith(SUFFIXES):
            raise ConfigError(f"data.source=text:{path_str}: {path.name} is not a format read here; use "
                              f"{', '.join(SUFFIXES)} (any other name is read as plain UTF-8 text)")
        return [path]
    if path.exists():
        raise ConfigError(f"data.source=text:{path_str}: neither a regular file nor a folder")
    raise ConfigError(f"data.source=text:{path_str}: no such file or folder")


def iter_documents(path_str: str) -> Iterator[str]:
    for f in text_files(path_str):
        yield from iter_file(f)
