"""Byte-level BPE (GPT-2 style: Radford et al. 2019) trained with HF `tokenizers`, and a uniform
tokenizer interface shared with the char tokenizer (`bos`, `vocab_size`, encode, encode_iterable,
decode, save).

The model is trained on the train split only (the validation text never shapes the vocabulary),
streamed from an iterator, so a corpus larger than memory works. Any byte sequence is encodable:
the 256 byte symbols are the initial alphabet.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Iterator

from ..config import ConfigError
from .errors import first_line, require
from .tokenizer import CharTokenizer

NEEDS = "data.tokenizer=bpe"   # what the tokenizers package is needed for, in its ConfigError
# A safe cut for streaming: a space, tab, CR or LF right after a non-whitespace character. The GPT-2
# pre-tokenizer regex never puts a non-space and a following space in one piece (only a *leading*
# space joins a word) and it has no look-behind, so the text splits there anyway and the merges,
# which never cross a piece, give the same ids on both sides. Python's \S is narrower than the
# library's (Oniguruma's) non-space, checked over every code point, so each cut is one there too.
_CUT = re.compile(r"(?<=\S)[ \t\r\n]")


class BPETokenizer:
    def __init__(self, tok, special_tokens: list[str]):
        if not special_tokens:
            raise ConfigError("a BPE tokenizer needs at least one special token (the first is the document boundary)")
        self.tok = tok
        self.special_tokens = list(special_tokens)
        self.bos = tok.token_to_id(self.special_tokens[0])
        self._special_ids = {tok.token_to_id(t): t for t in self.special_tokens[1:]}
        self._spaced = [t for t in self.special_tokens if any(c.isspace() for c in t)]

    @classmethod
    def train(cls, documents: Iterable[str], vocab_size: int, special_tokens: list[str]) -> "BPETokenizer":
        tk = require("tokenizers", NEEDS)
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(documents, trainer)
        return cls(tok, special_tokens)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts)]

    def encode_iterable(self, texts: Iterable[str], max_chars: int = 1 << 16) -> Iterator[int]:
        """Ids of "".join(texts), yielded lazily and exactly equal to encode() of the whole: a file
        larger than memory (e.g. an open file, line by line) is encoded in pieces of about max_chars,
        each cut at a safe point (see _CUT) that no special token straddles."""
        buf, scanned = "", 0
        for text in texts:
            buf += text
            while len(buf) > max_chars:
                cut, scanned = self._cut(buf, max(scanned, max_chars))
                if not cut:               # no safe point yet: read on, and rescan only the new text
                    break
                yield from self.encode(buf[:cut])
                buf, scanned = buf[cut:], 0
        if buf:
            yield from self.encode(buf)

    def _cut(self, text: str, start: int) -> tuple[int, int]:
        """(the first safe cut at or after `start` or 0 if none, where the next search may start).
        A cut is tried only where the text after it is long enough to show any special token with a
        space that would straddle it (the rest of one may not have been read yet)."""
        end = max(start, len(text) - max((len(t) - 1 for t in self._spaced), default=0))
        for m in _CUT.finditer(text, start, end):
            i = m.start()
            if not any(text.find(t, max(0, i - len(t) + 1), i + len(t) - 1) >= 0 for t in self._spaced):
                return i, i
        return 0, end

    def decode(self, ids) -> str:
        """Text of `ids` without the boundary; any other special token comes back verbatim (HF's
        ByteLevel decoder would map its characters as byte symbols: '<|café|>' -> '<|caf�|>')."""
        out, run = [], []
        for i in ids:
            if i == self.bos:
                continue
            if i in self._special_ids:
                out += [self.tok.decode(run), self._special_ids[i]]
                run = []
            else:
                run.append(i)
        return "".join(out) + self.tok.decode(run)

    def to_json(self) -> str:
        return self.tok.to_str()

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> "BPETokenizer":
        """A tokenizer.json written by save(); a file that is not one is a ConfigError naming it."""
        tk = require("tokenizers", NEEDS)
        try:
            text = Path(path).read_text(encoding="utf-8")
            specials = [t["content"] for t in json.loads(text).get("added_tokens") or []]
            tok = tk.Tokenizer.from_str(text)
        except Exception as err:  # OSError, JSONDecodeError, KeyError, and the library's bare Exception
            raise ConfigError(f"{path}: not a readable tokenizer.json ({type(err).__name__}: "
                              f"{first_line(err)})") from None
        if not specials:
            raise ConfigError(f"{path}: the tokenizer has no special (added) token; a boundary special token is "
                              "required (the first one separates documents)")
        return cls(tok, specials)


def load_tokenizer(path: Path):
    """tokenizer.json of a run directory: the char tokenizer's {"kind": "char"} or an HF tokenizer."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable tokenizer.json ({type(err).__name__}: {first_line(err)})") from None
    if isinstance(data, dict) and data.get("kind") == "char":
        return CharTokenizer.load(path)
    return BPETokenizer.load(path)


def chunks(documents: Iterator[str], max_chars: int = 1 << 22) -> Iterator[list[str]]:
    """Group documents into lists of about max_chars characters (the unit of batched encoding);
    a document longer than max_chars is a list of its own (encode_split streams its ids)."""
    batch, size = [], 0
    for doc in documents:
        if len(doc) > max_chars and batch:
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += len(doc)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
