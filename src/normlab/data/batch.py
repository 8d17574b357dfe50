"""What every data path hands the trainer: a Batch of ids (and the padding id), and the statistics of a split
(bits per byte and the leakage guard read them). Kept apart so the char, BPE and seq2seq paths share it
without importing each other."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IGNORE = -1


@dataclass
class Batch:
    x: torch.Tensor       # B, T input ids
    y: torch.Tensor       # B, T targets (IGNORE where padded)
    index: torch.Tensor   # B document indices (doc) or window starts (packed), for replay
    src: torch.Tensor | None = None   # B, S source ids for seq2seq tasks (IGNORE where padded), else None


def byte_entropy(hist: np.ndarray) -> float:
    """Unigram entropy of the byte distribution (bits per byte): a context-free estimate of the text."""
    p = hist[hist > 0] / max(hist.sum(), 1)
    return float(-(p * np.log2(p)).sum())


def text_stats(docs: list[str], n_tokens: int) -> dict:
    """Bytes, tokens and byte-unigram entropy of a split (bits per byte and the leakage guard use them)."""
    data = "\n".join(docs).encode("utf-8") + b"\n"   # the boundary stands for one separator byte
    hist = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    return {"n_docs": len(docs), "n_tokens": n_tokens, "n_bytes": len(data), "byte_entropy_bits": byte_entropy(hist)}
