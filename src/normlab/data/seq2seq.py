"""Seq2seq tasks generated from a corpus: each document d becomes (d, f(d)); batches are a pure
function of (seed, step), like data/batching.py, so resume and replay need no loader state.

    reverse: 'maria' -> 'airam'        sort: 'maria' -> 'aaimr'   (letters in code-point order)
Source row: [BOS] d [BOS], padded with IGNORE (the model masks it out). Decoder input: [BOS] f(d);
targets: f(d) [BOS] (BOS doubles as end-of-sequence), padded with IGNORE. Documents longer than
block_size - 2 characters are cut to that length before the task is applied.
"""
from __future__ import annotations

import torch

from .batch import IGNORE, Batch, text_stats
from .tokenizer import CharTokenizer

TASKS = {
    "reverse": lambda text: text[::-1],
    "sort": lambda text: "".join(sorted(text)),
}


def source_ids(tok: CharTokenizer, text: str) -> list[int]:
    return [tok.bos] + tok.encode(text) + [tok.bos]


class Seq2SeqData:
    """(source, target) pairs of one split with deterministic batch sampling."""

    def __init__(self, docs: list[str], tok: CharTokenizer, task: str, block_size: int):
        self.tok, self.task, self.block_size = tok, task, block_size
        self.sources = [d[: block_size - 2] for d in docs]
        self.targets = [TASKS[task](s) for s in self.sources]
        self._src = [torch.tensor(source_ids(tok, s)) for s in self.sources]
        self._tgt = [torch.tensor([tok.bos] + tok.encode(t) + [tok.bos]) for t in self.targets]
        # bits per byte are over the predicted (target) side: each target is predicted with its end token
        self.stats = text_stats(self.targets, sum(len(t) - 1 for t in self._tgt))

    @property
    def bytes_per_token(self) -> float:
        return self.stats["n_bytes"] / self.stats["n_tokens"]

    def __len__(self) -> int:
        return len(self.sources)

    def batch_index(self, batch_size: int, seed: int, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return torch.randint(len(self.sources), (batch_size,), generator=g)

    def batch(self, batch_size: int, seed: int, step: int) -> Batch:
        return self.replay(self.batch_index(batch_size, seed, step))

    def replay(self, index: torch.Tensor) -> Batch:
        """Rows as wide as the batch's longest pair (not block_size): same math, less padding."""
        rows = index.tolist()
        S = max(len(self._src[i]) for i in rows)
        T = max(len(self._tgt[i]) for i in rows) - 1
        src = torch.full((len(rows), S), IGNORE, dtype=torch.long)
        x = torch.full((len(rows), T), self.tok.bos, dtype=torch.long)
        y = torch.full((len(rows), T), IGNORE, dtype=torch.long)
        for r, i in enumerate(rows):
            s, t = self._src[i], self._tgt[i]
            src[r, : len(s)] = s
            x[r, : len(t) - 1] = t[:-1]
            y[r, : len(t) - 1] = t[1:]
        return Batch(x, y, index, src)
