"""Character tokenizer with one boundary token (id = number of characters), as in microgpt."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from ..config import ConfigError

BOUNDARY = "<|bos|>"


class CharTokenizer:
    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.bos = len(self.chars)

    @classmethod
    def fit(cls, documents: list[str]) -> "CharTokenizer":
        return cls(sorted(set("".join(documents))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as err:
            allowed = "".join(self.chars)
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary {allowed!r}") from None

    def encode_iterable(self, texts: Iterable[str]) -> Iterator[int]:
        """Ids of "".join(texts), lazily: one id per character, so any split of the text is exact."""
        for text in texts:
            yield from self.encode(text)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids if i != self.bos)

    def to_json(self) -> str:
        return json.dumps({"kind": "char", "chars": self.chars}, ensure_ascii=False)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> "CharTokenizer":
        """The tokenizer.json written by save(); anything else there is a ConfigError naming the file."""
        try:
            chars = json.loads(Path(path).read_text(encoding="utf-8"))["chars"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}: not a readable char tokenizer.json ({type(err).__name__}: {err})") from None
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars) \
                or len(set(chars)) != len(chars):
            raise ConfigError(f"{path}: `chars` must be a list of distinct single characters")
        return cls(chars)
