"""Token memmaps: a corpus encoded once into <cache_dir>/tokens/<key>/{train,val}.bin and reused.

Layout of each .bin: one stream [B] d1 [B] d2 ... [B] (B = the boundary token), uint16 when the
vocabulary fits, else uint32, read through np.memmap so only the sampled windows are paged in.
The key hashes the text's fingerprint and every setting that changes the ids (tokenizer, vocab
size, special tokens, split, byte cap), so a changed text or setting builds a new cache and an
unchanged one is reused. Concurrent runs (a sweep) build it once under a file lock.
Each split also records what bits per byte and the leakage guard need: bytes, tokens, the
byte-unigram entropy of its text, and how many validation documents also occur in train.
A damaged cache folder (meta.json or tokenizer.json unreadable, a .bin whose size disagrees with
meta.json: a full disk, a copy cut short, a hand edit) is rebuilt from the text, never trusted.
"""
from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import math
import random
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..config import ConfigError, DataConfig
from .batch import Batch, byte_entropy
from .bpe import NEEDS, BPETokenizer, chunks
from .corpora import Source, open_source
from .errors import cache_folder, require

FORMAT_VERSION = 1
# Measured with tokenizers 0.23 on a small text: the trainer reserves ~66-71 bytes per vocabulary
# entry up front, so 2**24 reserves ~1.1 GB and 10**9 asks for 71 GB and aborts the whole process
# (a Rust OOM, no exception). 2**20 (~70 MB) is 4x the largest vocabularies in use (262,144).
MAX_VOCAB = 1 << 20


def capped(docs: Iterator[str], max_bytes: int) -> Iterator[str]:
    """Documents while the byte total so far is under max_bytes (0 = all): the last one may cross it."""
    total = 0
    for doc in docs:
        if max_bytes and total >= max_bytes:
            return
        total += len(doc.encode("utf-8"))
        yield doc


def train_cap(cfg: DataConfig) -> int:
    """The train split's byte cap: data.train_max_bytes when set, else data.max_bytes (0 = all)."""
    return cfg.train_max_bytes or cfg.max_bytes


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
        return {"train": lambda: capped(held_out(False), train_cap(cfg)),
                "val": lambda: capped(held_out(True), cfg.max_bytes)}
    return {"train": lambda: capped(train(), train_cap(cfg)), "val": lambda: capped(val(), cfg.max_bytes)}


def _doc_hash(doc: str) -> bytes:
    return hashlib.blake2b(doc.encode("utf-8"), digest_size=8).digest()


def _batch_ids(tok: BPETokenizer, batch: list[str], max_chars: int, dtype) -> Iterator[np.ndarray]:
    """Ids of a batch of documents, each followed by the boundary. A document longer than max_chars
    (chunks() gives it a batch of its own) is encoded piece by piece with encode_iterable: one
    encode() of it holds the library's Encoding (token strings, offsets, ...) for the whole
    document at once, measured +2.6 GB for a 23 MB document of 6M tokens (+83 MB streamed)."""
    if len(batch) == 1 and len(batch[0]) > max_chars:
        doc = batch[0]
        ids = tok.encode_iterable((doc[i: i + max_chars] for i in range(0, len(doc), max_chars)), max_chars)
        while block := list(itertools.islice(ids, max_chars)):
            yield np.array(block, dtype=dtype)
        yield np.array([tok.bos], dtype=dtype)
        return
    yield np.concatenate([np.array(e + [tok.bos], dtype=dtype) for e in tok.encode_batch(batch)])


def encode_split(tok: BPETokenizer, docs: Iterator[str], path: Path, seen: set | None, collect: set | None,
                 max_chars: int = 1 << 22) -> dict:
    """Stream docs -> ids appended to `path`, encoded in batches of about max_chars; returns the split's statistics."""
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32
    hist = np.zeros(256, dtype=np.int64)
    n_docs = n_tokens = in_train = 0
    with open(path, "wb") as f:
        np.array([tok.bos], dtype=dtype).tofile(f)
        n_tokens += 1
        for batch in chunks(docs, max_chars):
            for ids in _batch_ids(tok, batch, max_chars, dtype):
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


def cache_key(cfg: DataConfig, src: Source, val_src: Source | None) -> str:
    settings = {"v": FORMAT_VERSION, "text": src.fingerprint, "val": val_src.fingerprint if val_src else None,
                "vocab": cfg.bpe_vocab_size, "special": cfg.special_tokens, "val_frac": cfg.val_frac,
                "split_seed": cfg.split_seed, "max_bytes": cfg.max_bytes}
    if cfg.train_max_bytes:  # only when set, so every existing cache keeps its key
        settings["train_max_bytes"] = cfg.train_max_bytes
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


def empty_split(cfg: DataConfig, split: str) -> ConfigError:
    source = cfg.val_source if split == "val" and cfg.val_source else cfg.source
    return ConfigError(f"data.source={source}: the {split} split has no documents (an empty file or folder? "
                       f"val_frac={cfg.val_frac}, max_bytes={cfg.max_bytes}); add text or change them")


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
            raise empty_split(cfg, split)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(folder, ignore_errors=True)   # a damaged cache: rename() cannot replace a non-empty folder
    tmp.rename(folder)


def _open_cache(folder: Path) -> tuple[BPETokenizer, dict] | None:
    """(tokenizer, meta) of a whole cache folder; None when it is missing or damaged (then rebuilt)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        for split in ("train", "val"):
            stats = meta[split]
            if stats["dtype"] not in ("uint16", "uint32"):
                return None
            if (folder / f"{split}.bin").stat().st_size != stats["n_tokens"] * np.dtype(stats["dtype"]).itemsize:
                return None
        return BPETokenizer.load(folder / "tokenizer.json"), meta
    except (OSError, ValueError, KeyError, TypeError):   # ConfigError (a bad tokenizer.json) is a ValueError
        return None


def prepare_bpe(cfg: DataConfig) -> tuple[BPETokenizer, dict, Path]:
    """Open (or build once) the tokenizer and token memmaps for `cfg`; return (tokenizer, stats, folder).
    A damaged cache folder is rebuilt (see the module docstring)."""
    require("tokenizers", NEEDS)   # before _open_cache: a missing package must not look like a damaged cache
    tokens = cache_folder(cfg.cache_dir, "tokens")
    src = open_source(cfg.source, cfg.cache_dir)
    val_src = open_source(cfg.val_source, cfg.cache_dir) if cfg.val_source else None
    folder = tokens / cache_key(cfg, src, val_src)
    try:
        with _locked(folder.with_name(folder.name + ".lock")):
            opened = _open_cache(folder)
            if opened is None:
                _build(folder, cfg, split_streams(src, val_src, cfg))
                opened = _open_cache(folder)
    except OSError as err:   # reading the text raises ConfigError (localtext), so this is the cache's writing
        raise ConfigError(f"data.cache_dir={cfg.cache_dir}: cannot write the token cache "
                          f"({err.filename or folder}: {err.strerror or err})") from None
    if opened is None:
        raise ConfigError(f"{folder}: the token cache just built does not read back; delete the folder and retry")
    tok, meta = opened
    return tok, meta, folder


def check_windows(n_tokens: int, block_size: int, what: str) -> None:
    """A packed split needs one window of block_size + 1 tokens (inputs and shifted targets)."""
    if n_tokens < block_size + 1:
        raise ConfigError(f"{what} has {n_tokens} tokens, but model.block_size={block_size} needs at least "
                          f"{block_size + 1}; use more text (data.max_bytes) or a smaller model.block_size")


def window_starts(n_tokens: int, block_size: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Starts of batch (seed, step)'s windows: every start 0 .. n_tokens - block_size - 1 can be drawn."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(n_tokens - block_size, (batch_size,), generator=g)


class MemmapTokens:
    """One split's token stream on disk; batches are random windows, a pure function of (seed, step)."""

    def __init__(self, path: Path, stats: dict, block_size: int):
        self.stats, self.block_size = stats, block_size
        n_tokens = Path(path).stat().st_size // np.dtype(stats["dtype"]).itemsize
        check_windows(n_tokens, block_size, f"the {Path(path).stem} split ({path})")
        self.stream = np.memmap(path, dtype=stats["dtype"], mode="r")

    def batch_index(self, batch_size: int, seed: int, step: int) -> torch.Tensor:
        return window_starts(len(self.stream), self.block_size, batch_size, seed, step)

    def batch(self, batch_size: int, seed: int, step: int):
        return self.rows_from_stream(self.batch_index(batch_size, seed, step))

    def rows_from_stream(self, index: torch.Tensor):
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


def _bpe_settings(cfg) -> str | None:
    d = cfg.data
    if d.max_bytes < 0:   # both tokenizers honour it
        return f"data.max_bytes={d.max_bytes} must be >= 0 (0 = all)"
    if d.tokenizer != "bpe":
        return None
    if d.task != "lm":   # the seq2seq tasks build their rows from characters (data/seq2seq.py), BPE streams text
        return f"data.tokenizer=bpe streams a language-model corpus; data.task={d.task} needs data.tokenizer=char"
    if d.batching != "packed":
        return "data.tokenizer=bpe streams token memmaps and needs data.batching=packed"
    if not d.special_tokens or not all(isinstance(t, str) and t for t in d.special_tokens):
        return f"data.special_tokens={d.special_tokens!r} must list at least one non-empty string (the boundary)"
    if d.bpe_vocab_size < 256 + len(d.special_tokens):
        return (f"data.bpe_vocab_size={d.bpe_vocab_size} must be at least 256 byte symbols + "
                f"{len(d.special_tokens)} special tokens")
    if d.bpe_vocab_size > MAX_VOCAB:
        return (f"data.bpe_vocab_size={d.bpe_vocab_size} is too large: allowed {256 + len(d.special_tokens)} .. "
                f"{MAX_VOCAB} (2**20; the trainer reserves memory for every entry up front)")
    return None
