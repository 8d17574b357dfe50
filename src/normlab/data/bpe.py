"""Byte-level BPE (GPT-2 style: Radford et al. 2019) trained with HF `tokenizers`, and a uniform
tokenizer interface shared with the char tokenizer (`bos`, `vocab_size`, encode, decode, save).

The model is trained on the train split only (the validation text never shapes the vocabulary),
streamed from an iterator, so a corpus larger than memory works. Any byte sequence is encodable:
the 256 byte symbols are the initial alphabet.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from .tokenizer import CharTokenizer


class BPETokenizer:
    def __init__(self, tok, special_tokens: list[str]):
        self.tok = tok
        self.special_tokens = list(special_tokens)
        self.bos = tok.token_to_id(self.special_tokens[0])

    @classmethod
    def train(cls, documents: Iterable[str], vocab_size: int, special_tokens: list[str]) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(documents, trainer)
        return cls(tok, special_tokens)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts)]

    def decode(self, ids) -> str:
        return self.tok.decode([i for i in ids if i != self.bos], skip_special_tokens=False)

    def to_json(self) -> str:
        return self.tok.to_str()

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> "BPETokenizer":
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path))
        specials = [t["content"] for t in json.loads(Path(path).read_text())["added_tokens"]]
        return cls(tok, specials)


def load_tokenizer(path: Path):
    """tokenizer.json of a run directory: the char tokenizer's {"kind": "char"} or an HF tokenizer."""
    data = json.loads(Path(path).read_text())
    return CharTokenizer.load(path) if data.get("kind") == "char" else BPETokenizer.load(path)


def chunks(documents: Iterator[str], max_chars: int = 1 << 22) -> Iterator[list[str]]:
    """Group documents into lists of about max_chars characters (the unit of batched encoding)."""
    batch, size = [], 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
