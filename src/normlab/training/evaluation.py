"""Validation loss on a fixed set of batches, and samples from the trained model."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..data import IGNORE
from .step import model_logits

EVAL_SEED_OFFSET = 7919  # the validation batches: the same in every call and in every run of a corpus


# Logit elements (rows x T x vocab) one evaluation forward may hold: tiny batches are joined into one forward
# (prepost's 16 batches of one 16-token name: 16 forwards -> 1), large ones still go one batch at a time.
EVAL_LOGITS = 1 << 24


@torch.no_grad()
def evaluate(model, data, cfg: RunConfig, device) -> float:
    """Mean loss (nats/token) over train.eval_batches fixed validation batches: the sum of every target's
    cross-entropy over the count of targets (the mean of the batches' means weighted by their targets)."""
    was_training = model.training
    model.eval()
    batches = [data.batch(cfg.train.batch_size, seed=cfg.data.split_seed + EVAL_SEED_OFFSET, step=i)
               for i in range(cfg.train.eval_batches)]
    total, count = 0.0, 0
    for group in _joined(batches, cfg.model.vocab_size):
        y = torch.cat([b.y for b in group]).to(device)
        logits = (model_logits(model, group[0], device) if len(group) == 1 else
                  model(torch.cat([b.x for b in group]).to(device)))
        total += F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1), ignore_index=IGNORE,
                                 reduction="sum").item()
        count += int((y != IGNORE).sum())
    model.train(was_training)
    return total / max(count, 1)


def _joined(batches: list, vocab: int) -> list[list]:
    """Consecutive batches of one shape in groups of one forward each, as many as EVAL_LOGITS allows; a batch
    with a source sequence (seq2seq: its width is its own) alone."""
    if not batches or getattr(batches[0], "src", None) is not None:
        return [[b] for b in batches]
    per = max(1, EVAL_LOGITS // (batches[0].x.numel() * (vocab or 1 << 16)))
    groups: list[list] = []
    for b in batches:
        if groups and len(groups[-1]) < per and b.x.shape == groups[-1][0].x.shape:
            groups[-1].append(b)
        else:
            groups.append([b])
    return groups


def generate_samples(model, tok, cfg: RunConfig, device, prompt: str = "", n: int | None = None,
                     seed: int | None = None) -> list[str]:
    """Samples start at the boundary token (+ prompt) and end at the next boundary token; all n are drawn
    as one batch (one forward per position instead of n)."""
    n = cfg.sample.n if n is None else n
    if n == 0:
        return []
    was_training = model.training
    model.eval()
    g = torch.Generator(device=device).manual_seed(cfg.train.seed if seed is None else seed)
    max_new = cfg.sample.max_new_tokens or cfg.model.block_size
    start = [tok.bos] + tok.encode(prompt)
    idx = torch.tensor([start] * n, device=device)
    rows = model.generate(idx, max_new, cfg.sample.temperature, g, stop_token=tok.bos)[:, len(start):].tolist()
    model.train(was_training)
    out = []
    for row in rows:
        row = row[: row.index(tok.bos)] if tok.bos in row else row
        out.append(tok.decode(row).split("\n")[0])
    return out
