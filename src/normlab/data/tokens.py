"""Token memmaps: a corpus encoded once into <cache_dir>/tokens/<key>/{train,val}.bin and reused.

Layout of each .bin: one stream [B] d1 [B] d2 ... [B] (B = the boundary token), uint16 when the
vocabulary fits, else uint32, read through np.memmap so only the sampled windows are paged in.
The key hashes the text's fingerprint and every setting that changes the ids (tokenizer, vocab
size, special tokens, split, byte cap), so a changed text or setting builds a new cache and an
unchanged one is reused. Concurrent runs (a sweep) build it once under a file lock.
Each split also records what bits per byte and the leakage guard need: bytes, tokens, the
byte-unigram entropy of its text, and how many validation documents also occur in train.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import random
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..config import ConfigError, DataConfig, register_rule
from .bpe import BPETokenizer, chunks
from .corpora import Source, open_source

FORMAT_VERSION = 1


def _capped(docs: Iterator[str], max_bytes: int) -> Iterator[str]:
    total = 0
    for doc in docs:
        if max_bytes and total >= max_bytes:
            return
        total += len(doc.encode("utf-8"))
        yield doc


def split_streams(src: Source, val_src: Source | None, cfg: DataConfig) -> dict[str, Callable[[], Iterator[str]]]:
    """train/val document streams: a separate val source, the source's own split, or a held-out fraction."""
    train = src.splits["train"]
    if val_src is not None:
        val = val_src.splits.get("validation", val_src.splits["train"])
    elif "validation" in src.splits:
        val = src.splits["validation"]
    else:
        def held_out(want_val: bool) -> Iterator[str]:
            rng = random.Random(cfg.split_seed)  # one draw per document, same sequence for both splits
            return (d for d in train() if (rng.random() < cfg.val_frac) == want_val)
        return {"train": lambda: _capped(held_out(False), cfg.max_bytes),
                "val": lambda: _capped(held_out(True), cfg.max_bytes)}
    return {"train": lambda: _capped(train(), cfg.max_bytes), "val": lambda: _capped(val(), cfg.max_bytes)}


def _doc_hash(doc: str) -> bytes:
    return hashlib.blake2b(doc.encode("utf-8"), digest_size=8).digest()


def encode_split(tok: BPETokenizer, docs: Iterator[str], path: Path, seen: set | None, collect: set | None) -> dict:
    """Stream docs -> ids appended to `path`; returns the split's statistics."""
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32
    hist = np.zeros(256, dtype=np.int64)
    n_docs = n_tokens = in_train = 0
    with open(path, "wb") as f:
        np.array([tok.bos], dtype=dtype).tofile(f)
        n_tokens += 1
        for batch in chunks(docs):
            ids = np.concatenate([np.array(e + [tok.bos], dtype=dtype) for e in tok.encode_batch(batch)])
            ids.tofile(f)
            n_tokens += len(ids)
            n_docs += len(batch)
            data = "\n".join(batch).encode("utf-8") + b"\n"   # the boundary stands for one separator byte
            hist += np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
            for d in batch:
                if collect is not None:
                    collect.add(_doc_hash(d))
                if seen is not None:
                    in_train += _doc_hash(d) in seen
    return {"dtype": np.dtype(dtype).name, "n_docs": n_docs, "n_tokens": n_tokens, "n_bytes": int(hist.sum()),
            "byte_entropy_bits": byte_entropy(hist), "docs_in_train": in_train if seen is not None else None}


def byte_entropy(hist: np.ndarray) -> float:
    """Unigram entropy of the byte distribution (bits per byte): a context-free estimate of the text."""
    p = hist[hist > 0] / max(hist.sum(), 1)
    return float(-(p * np.log2(p)).sum())


def cache_key(cfg: DataConfig, src: Source, val_src: Source | None) -> str:
    settings = {"v": FORMAT_VERSION, "text": src.fingerprint, "val": val_src.fingerprint if val_src else None,
                "vocab": cfg.bpe_vocab_size, "special": cfg.special_tokens, "val_frac": cfg.val_frac,
                "split_seed": cfg.split_seed, "max_bytes": cfg.max_bytes}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(folder: Path, cfg: DataConfig, streams) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok = BPETokenizer.train(streams["train"](), cfg.bpe_vocab_size, cfg.special_tokens)
    tok.save(tmp / "tokenizer.json")
    train_hashes: set = set()
    meta = {"train": encode_split(tok, streams["train"](), tmp / "train.bin", None, train_hashes)}
    meta["val"] = encode_split(tok, streams["val"](), tmp / "val.bin", train_hashes, None)
    for split, stats in meta.items():
        if stats["n_docs"] == 0:
            raise ConfigError(f"data.source={cfg.source}: the {split} split is empty "
                              f"(val_frac={cfg.val_frac}, max_bytes={cfg.max_bytes}); raise them or add text")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    tmp.rename(folder)


def prepare_bpe(cfg: DataConfig) -> tuple[BPETokenizer, dict, Path]:
    """Open (or build once) the tokenizer and token memmaps for `cfg`; return (tokenizer, stats, folder)."""
    cache = Path(cfg.cache_dir).expanduser()
    src = open_source(cfg.source, cache)
    val_src = open_source(cfg.val_source, cache) if cfg.val_source else None
    folder = cache / "tokens" / cache_key(cfg, src, val_src)
    with _locked(folder.with_name(folder.name + ".lock")):
        if not (folder / "meta.json").exists():
            _build(folder, cfg, split_streams(src, val_src, cfg))
    return BPETokenizer.load(folder / "tokenizer.json"), json.loads((folder / "meta.json").read_text()), folder


class MemmapTokens:
    """One split's token stream on disk; batches are random windows, a pure function of (seed, step)."""

    def __init__(self, path: Path, stats: dict, block_size: int):
        self.stats, self.block_size = stats, block_size
        self.stream = np.memmap(path, dtype=stats["dtype"], mode="r")
        if len(self.stream) <= block_size + 1:
            raise ConfigError(f"{path.name}: the split has {len(self.stream)} tokens, fewer than block_size + 1; "
                              "use more text or a smaller model.block_size")

    def batch_index(self, batch_size: int, seed: int, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return torch.randint(len(self.stream) - self.block_size - 1, (batch_size,), generator=g)

    def batch(self, batch_size: int, seed: int, step: int):
        return self.rows_from_stream(self.batch_index(batch_size, seed, step))

    def rows_from_stream(self, index: torch.Tensor):
        from .batching import Batch

        rows = np.stack([self.stream[i: i + self.block_size + 1] for i in index.tolist()]).astype(np.int64)
        rows = torch.from_numpy(rows)
        return Batch(rows[:, :-1].contiguous(), rows[:, 1:].contiguous(), index)

    replay = rows_from_stream

    @property
    def bytes_per_token(self) -> float:
        return self.stats["n_bytes"] / self.stats["n_tokens"]


def bits_per_byte(loss_nats: float, bytes_per_token: float) -> float:
    """bpb = loss_nats * tokens / (bytes * ln 2): comparable across tokenizers."""
    return loss_nats / (bytes_per_token * math.log(2))


@register_rule
def _bpe_settings(cfg) -> str | None:
    d = cfg.data
    if d.tokenizer != "bpe":
        return None
    if d.batching != "packed":
        return "data.tokenizer=bpe streams token memmaps and needs data.batching=packed"
    if not d.special_tokens or not all(isinstance(t, str) and t for t in d.special_tokens):
        return f"data.special_tokens={d.special_tokens!r} must list at least one non-empty string (the boundary)"
    if d.bpe_vocab_size < 256 + len(d.special_tokens):
        return (f"data.bpe_vocab_size={d.bpe_vocab_size} must be at least 256 byte symbols + "
                f"{len(d.special_tokens)} special tokens")
    if d.max_bytes < 0:
        return "data.max_bytes must be >= 0 (0 = all)"
    return None
