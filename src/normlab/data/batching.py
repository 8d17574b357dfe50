"""Fixed train/val split and the two batching modes, each batch a pure function of (seed, step).

`doc`: each row is one document [BOS] d [BOS] (seed 003 trains on one name per step); rows are
padded with target -1 (ignored by the loss). Causal attention means padding never leaks backwards.
`packed`: one stream [BOS] d1 [BOS] d2 ...; rows are random windows of block_size + 1 tokens.
Because batch k depends only on (seed, k), resume and replay need no data-loader state.
`build_corpus` picks the char path (documents in memory, as seed 003 needs) or the BPE path
(streamed into token memmaps, data/tokens.py); both expose the same batch interface and the
statistics that bits per byte and the leakage guard use.
"""
from __future__ import annotations

import contextlib
import hashlib
import random
from dataclasses import dataclass

import torch


from ..config import ConfigError, DataConfig
from .corpora import open_source
from .tokenizer import CharTokenizer
from .batch import IGNORE, Batch, text_stats
from .seq2seq import Seq2SeqData
from .synthetic import SyntheticData, fingerprint as synthetic_fingerprint, is_synthetic, parse as parse_synthetic
from .tokens import MemmapTokens, cache_key, capped, check_windows, empty_split, prepare_bpe, train_cap, window_starts

def split_documents(docs: list[str], val_frac: float, split_seed: int) -> tuple[list[str], list[str]]:
    order = list(range(len(docs)))
    random.Random(split_seed).shuffle(order)
    n_val = max(1, int(round(len(docs) * val_frac)))
    val = [docs[i] for i in order[:n_val]]
    train = [docs[i] for i in order[n_val:]]
    return train, val


class TokenData:
    """Tokenized split with deterministic batch sampling."""

    def __init__(self, docs: list[str], tok: CharTokenizer, mode: str, block_size: int, name: str = "the corpus"):
        self.tok, self.mode, self.block_size = tok, mode, block_size
        if not docs:
            raise ConfigError(f"{name} has no documents")
        self.docs = [torch.tensor([tok.bos] + tok.encode(d) + [tok.bos]) for d in docs]
        self.stream = torch.cat([d[:-1] for d in self.docs] + [torch.tensor([tok.bos])])
        if mode == "packed":
            check_windows(len(self.stream), block_size, name)
        self.stats = text_stats(docs, len(self.stream))

    @property
    def bytes_per_token(self) -> float:
        return self.stats["n_bytes"] / self.stats["n_tokens"]

    def batch(self, batch_size: int, seed: int, step: int) -> Batch:
        return self.replay(self.batch_index(batch_size, seed, step))

    def batch_index(self, batch_size: int, seed: int, step: int) -> torch.Tensor:
        """Document indices (doc) or window starts (packed) of batch (seed, step); ranks slice it."""
        if self.mode == "packed":
            return window_starts(len(self.stream), self.block_size, batch_size, seed, step)
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return torch.randint(len(self.docs), (batch_size,), generator=g)

    def rows_from_docs(self, index: torch.Tensor) -> Batch:
        T = self.block_size
        x = torch.full((len(index), T), self.tok.bos, dtype=torch.long)
        y = torch.full((len(index), T), IGNORE, dtype=torch.long)
        for row, i in enumerate(index.tolist()):
            toks = self.docs[i][: T + 1]
            x[row, : len(toks) - 1] = toks[:-1]
            y[row, : len(toks) - 1] = toks[1:]
        return Batch(x, y, index)

    def rows_from_stream(self, index: torch.Tensor) -> Batch:
        offsets = torch.arange(self.block_size + 1)
        rows = self.stream[index[:, None] + offsets]
        return Batch(rows[:, :-1].contiguous(), rows[:, 1:].contiguous(), index)

    def replay(self, index: torch.Tensor) -> Batch:
        return self.rows_from_docs(index) if self.mode == "doc" else self.rows_from_stream(index)


@dataclass
class Corpus:
    tokenizer: object       # CharTokenizer or BPETokenizer: bos, vocab_size, encode, decode, to_json
    train: object           # TokenData, MemmapTokens or Seq2SeqData: batch(batch_size, seed, step), replay, stats
    val: object
    fingerprint: str = ""   # changes whenever the text behind either split changes (meta.json "data"; resume checks it)


def _char_docs(cfg: DataConfig) -> tuple[list[str], list[str], str]:
    """train/val documents, each split cut to data.max_bytes by the BPE path's rule (tokens.capped), and the
    sources' fingerprint."""
    src = open_source(cfg.source, cfg.cache_dir)
    val_named = open_source(cfg.val_source, cfg.cache_dir) if cfg.val_source else None
    if cfg.val_source or "validation" in src.splits:
        val_src = val_named or src
        train = list(capped(src.splits["train"](), train_cap(cfg)))   # stops reading at the cap
        val = list(capped(val_src.splits.get("validation", val_src.splits["train"])(), cfg.max_bytes))
    else:
        docs = list(src.splits["train"]())   # the held-out split shuffles all documents, then caps each side
        if len(docs) < 2:
            raise ConfigError(f"data.source={cfg.source}: need at least 2 non-empty documents, found {len(docs)}")
        halves = split_documents(docs, cfg.val_frac, cfg.split_seed)
        train, val = list(capped(iter(halves[0]), train_cap(cfg))), list(capped(iter(halves[1]), cfg.max_bytes))
    for split, docs in (("train", train), ("val", val)):
        if not docs:
            raise empty_split(cfg, split)
    return train, val, _char_fingerprint(src, val_named)


def _char_fingerprint(src, val_src) -> str:
    text = src.fingerprint + (("|" + val_src.fingerprint) if val_src else "")
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def data_fingerprint(cfg: DataConfig) -> str:
    """What build_corpus(cfg).fingerprint is (meta.json's "data"), from the sources alone: no tokenizing, so a
    sweep can check its finished runs against the text as it is now (a `text:` file hashes its bytes)."""
    if is_synthetic(cfg.source):
        return synthetic_fingerprint(parse_synthetic(cfg.source))
    src = open_source(cfg.source, cfg.cache_dir)
    val_src = open_source(cfg.val_source, cfg.cache_dir) if cfg.val_source else None
    return cache_key(cfg, src, val_src) if cfg.tokenizer == "bpe" else _char_fingerprint(src, val_src)


_SHARED: dict | None = None   # build_corpus's memo while `shared_corpora` is open


@contextlib.contextmanager
def shared_corpora():
    """Within this block build_corpus returns one Corpus per (data config, block size): the members of a stack set
    up together read the same text, and a Corpus is read-only (each batch a pure function of (seed, step)). Scoped
    to one set-up, not the process, so a text file edited between two runs of a long-lived process is read again."""
    global _SHARED
    outer = _SHARED
    _SHARED = {} if outer is None else outer
    try:
        yield
    finally:
        _SHARED = outer


def build_corpus(cfg: DataConfig, block_size: int) -> Corpus:
    if _SHARED is None:
        return _build_corpus(cfg, block_size)
    key = (repr(cfg), block_size)
    if key not in _SHARED:
        _SHARED[key] = _build_corpus(cfg, block_size)
    return _SHARED[key]


def _build_corpus(cfg: DataConfig, block_size: int) -> Corpus:
    if is_synthetic(cfg.source):   # token ids generated per (split, seed, step): data/synthetic.py
        process = parse_synthetic(cfg.source)
        return Corpus(CharTokenizer(process.symbols), SyntheticData(process, "train", block_size),
                      SyntheticData(process, "val", block_size), synthetic_fingerprint(process))
    if cfg.tokenizer == "bpe":
        tok, stats, folder = prepare_bpe(cfg)
        return Corpus(tok, MemmapTokens(folder / "train.bin", stats["train"], block_size),
                      MemmapTokens(folder / "val.bin", stats["val"], block_size), folder.name)  # the text's hash
    train_docs, val_docs, fingerprint = _char_docs(cfg)
    tok = CharTokenizer.fit(train_docs + val_docs)
    if cfg.task != "lm":
        return Corpus(tok, Seq2SeqData(train_docs, tok, cfg.task, block_size),
                      Seq2SeqData(val_docs, tok, cfg.task, block_size), fingerprint)
    train_name = f"data.source={cfg.source}: the train split"
    val_name = f"data.source={cfg.val_source or cfg.source}: the val split"
    return Corpus(tok, TokenData(train_docs, tok, cfg.batching, block_size, train_name),
                  TokenData(val_docs, tok, cfg.batching, block_size, val_name), fingerprint)
