"""Seq2seq evaluation: greedy outputs on the held-out split, exact-match and per-character accuracy.

Per-character accuracy counts target characters predicted at their own position (a missing
character is wrong; extra output characters are caught by exact match), summed over the split.
"""
from __future__ import annotations

import torch

from ..data import Seq2SeqData
from ..model.encdec import greedy_decode


@torch.no_grad()
def decode_split(model, data: Seq2SeqData, device, limit: int | None = None, chunk: int = 256) -> list[str]:
    """Greedy outputs for the first `limit` sources of a split (all of them by default)."""
    n = len(data) if limit is None else min(limit, len(data))
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, n, chunk):
        batch = data.replay(torch.arange(start, min(start + chunk, n)))
        ids = greedy_decode(model, batch.src.to(device), data.tok.bos, data.block_size)
        outputs += [data.tok.decode(row) for row in ids]
    model.train(was_training)
    return outputs


def task_accuracy(outputs: list[str], targets: list[str]) -> dict[str, float]:
    exact = sum(o == t for o, t in zip(outputs, targets))
    chars = sum(sum(a == b for a, b in zip(o, t)) for o, t in zip(outputs, targets))
    total = sum(len(t) for t in targets[: len(outputs)])
    return {"task_exact_match": exact / max(len(outputs), 1), "task_char_accuracy": chars / max(total, 1),
            "task_eval_size": len(outputs)}


def seq2seq_report(model, data: Seq2SeqData, device, n_samples: int) -> tuple[dict, list[str]]:
    """(accuracy dict over the whole split, 'source -> output' lines for the first n_samples)."""
    outputs = decode_split(model, data, device)
    samples = [f"{s} -> {o}" for s, o in zip(data.sources[:n_samples], outputs[:n_samples])]
    return task_accuracy(outputs, data.targets), samples
