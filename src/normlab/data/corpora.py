"""Named corpora -> a list of documents (strings).

`names`: US Census 1990 first names (public domain) shipped inside the PyPI package `names`, so it
needs no download: male + female lists, lowercased, de-duplicated, sorted (5,163 names).
`text:<path>`: a local UTF-8 file (one document per line) or a folder of *.txt files.
"""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError


def _names() -> list[str]:
    import names  # PyPI `names` 0.3.0; its data files sit beside the module

    folder = Path(names.__file__).resolve().parent
    found = set()
    for fname in ("dist.male.first", "dist.female.first"):
        for line in (folder / fname).read_text().splitlines():
            if line.strip():
                found.add(line.split()[0].lower())
    return sorted(found)


def _text(path_str: str) -> list[str]:
    path = Path(path_str).expanduser()
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise ConfigError(f"data.source=text:{path_str}: the folder has no *.txt files")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"data.source=text:{path_str}: no such file or folder")
    docs = []
    for f in files:
        try:
            docs.extend(line.strip() for line in f.read_text(encoding="utf-8").splitlines())
        except UnicodeDecodeError as err:
            raise ConfigError(f"data.source=text:{path_str}: {f} is not UTF-8 text ({err.reason})") from None
    docs = [d for d in docs if d]
    if len(docs) < 2:
        raise ConfigError(f"data.source=text:{path_str}: need at least 2 non-empty lines, found {len(docs)}")
    return docs


SOURCES = {
    "names": "US Census 1990 first names, 5,163 lowercase names (embedded, from PyPI `names`)",
    "text:<path>": "a local UTF-8 file (one document per line) or a folder of *.txt files",
}


def load_documents(source: str) -> list[str]:
    if source == "names":
        return _names()
    if source.startswith("text:"):
        return _text(source[len("text:"):])
    raise ConfigError(f"data.source={source!r} is unknown; choose `names` or `text:<path>`")
