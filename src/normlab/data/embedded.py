"""The embedded `names` corpus: US Census 1990 first names (public domain) shipped inside the PyPI package
`names`, male + female lists, lowercased, de-duplicated, sorted (5,163 names). Read by the `names` source
(corpora.py) and by the synthetic Bigram-Backcopy source (synthetic.py), which counts its bigrams."""
from __future__ import annotations

from pathlib import Path


def names_list() -> list[str]:
    import names  # PyPI `names` 0.3.0; its data files sit beside the module

    folder = Path(names.__file__).resolve().parent
    found = set()
    for fname in ("dist.male.first", "dist.female.first"):
        for line in (folder / fname).read_text().splitlines():
            if line.strip():
                found.add(line.split()[0].lower())
    return sorted(found)
