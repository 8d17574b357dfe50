"""Named corpora -> document streams, split into train and validation.

`names`: US Census 1990 first names (public domain) shipped inside the PyPI package `names`, so it
needs no download: male + female lists, lowercased, de-duplicated, sorted (5,163 names).
`text:<path>`: a local file or folder (data/localtext.py). `tinystories`, `wikitext2`,
`tinyshakespeare`, `owt-sample`: Hugging Face downloads cached once (data/hub.py).
A source with its own validation split uses it; otherwise the caller holds out `val_frac`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..config import ConfigError
from .hub import HUB_SOURCES, open_hub
from .localtext import iter_documents, reading, text_files
from .embedded import names_list as _names
from .synthetic import describe_sources, is_synthetic


SOURCES = {
    "names": "US Census 1990 first names, 5,163 lowercase names (embedded, from PyPI `names`)",
    **{name: spec.about for name, spec in HUB_SOURCES.items()},
    "text:<path>": "a local .txt/.txt.gz (one document per line, or per <|endoftext|> chunk), .jsonl (`text` "
                   "field) or .parquet (`text` column) file, or a folder of them",
    **describe_sources(),
}


@dataclass
class Source:
    """A corpus as re-readable document streams: `splits["train"]()` (and maybe "validation")."""
    name: str
    splits: dict[str, Callable[[], Iterator[str]]]
    fingerprint: str   # changes whenever the underlying text changes (cache key)


def _file_fingerprint(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.resolve()).encode())
        with reading(f), open(f, "rb") as fh:   # the first read of a `text:` file: permission denied starts here
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def open_source(source: str, cache_dir: str | Path = "~/.cache/normlab") -> Source:
    if source == "names":
        return Source("names", {"train": lambda: iter(_names())}, "names==0.3.0")
    if source.startswith("text:"):
        path = source[len("text:"):]
        files = text_files(path)
        return Source(source, {"train": lambda: iter_documents(path)}, _file_fingerprint(files))
    if source in HUB_SOURCES:
        splits, fingerprint = open_hub(HUB_SOURCES[source], Path(cache_dir))
        return Source(source, splits, fingerprint)
    if is_synthetic(source):
        raise ConfigError(f"data.source={source}: a synthetic source generates token ids, not documents "
                          "(build_corpus reads it; it has no text to list or tokenize)")
    known = ", ".join(s for s in SOURCES)
    raise ConfigError(f"data.source={source!r} is unknown; choose one of: {known} (e.g. `names` or `text:<path>`)")


def load_documents(source: str, cache_dir: str | Path = "~/.cache/normlab", split: str = "train") -> list[str]:
    """Every document of one split as a list (small corpora; the BPE path streams instead)."""
    src = open_source(source, cache_dir)
    if split not in src.splits:
        raise ConfigError(f"data.source={source}: no {split!r} split (has: {', '.join(src.splits)})")
    docs = list(src.splits[split]())
    if len(docs) < 2:
        raise ConfigError(f"data.source={source}: need at least 2 non-empty documents, found {len(docs)}")
    return docs
