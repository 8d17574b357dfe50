"""`text:<path>`: documents from a local file or folder, streamed (a corpus may exceed memory).

Formats by suffix: `.txt` (and `.gz` of it), `.jsonl` (one JSON object per line, field `text`),
`.parquet` (column `text`, read batch by batch with pyarrow). A text file whose first MiB holds
the `<|endoftext|>` marker (TinyStories, OpenWebText dumps) has one document per marker-separated
chunk; any other text file has one document per non-empty line (names lists, WikiText lines).
"""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Iterator

from ..config import ConfigError

MARKER = "<|endoftext|>"
SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".parquet")
_CHUNK = 1 << 20


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
    with _open_text(path) as f:
        head = f.read(_CHUNK)
    with _open_text(path) as f:
        if MARKER in head:
            yield from _marker_docs(f)
        else:
            yield from (line.strip() for line in f if line.strip())


def _iter_jsonl(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line).get("text")
            except (json.JSONDecodeError, AttributeError):
                raise ConfigError(f"{path}:{n}: not a JSON object with a `text` field") from None
            if not isinstance(text, str):
                raise ConfigError(f"{path}:{n}: the `text` field is missing or not a string")
            if text.strip():
                yield text.strip()


def _iter_parquet(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if "text" not in pf.schema_arrow.names:
        raise ConfigError(f"{path}: no `text` column (columns: {', '.join(pf.schema_arrow.names)})")
    for batch in pf.iter_batches(columns=["text"], batch_size=4096):
        yield from (t.strip() for t in batch.column(0).to_pylist() if t and t.strip())


def iter_file(path: Path) -> Iterator[str]:
    if path.name.endswith(".parquet"):
        return _iter_parquet(path)
    if path.name.endswith(".jsonl"):
        return _iter_jsonl(path)
    return iter_text_file(path)


def text_files(path_str: str) -> list[Path]:
    """The files `text:<path>` stands for (sorted, so the document order is fixed)."""
    path = Path(path_str).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
        if not files:
            raise ConfigError(f"data.source=text:{path_str}: the folder has no {', '.join(SUFFIXES)} files")
        return files
    if path.is_file():
        return [path]
    raise ConfigError(f"data.source=text:{path_str}: no such file or folder")


def iter_documents(path_str: str) -> Iterator[str]:
    for f in text_files(path_str):
        try:
            yield from iter_file(f)
        except UnicodeDecodeError as err:
            raise ConfigError(f"data.source=text:{path_str}: {f} is not UTF-8 text ({err.reason})") from None
