"""Validation loss on a fixed set of batches, and samples from the trained model."""
from __future__ import annotations

import torch

from ..config import RunConfig
from ..data import IGNORE
from .step import lm_loss, model_logits

EVAL_SEED_OFFSET = 7919  # the validation batches: the same in every call and in every run of a corpus


@torch.no_grad()
def evaluate(model, data, cfg: RunConfig, device) -> float:
    """Mean loss (nats/token) over train.eval_batches fixed validation batches."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(cfg.train.eval_batches):
        b = data.batch(cfg.train.batch_size, seed=cfg.data.split_seed + EVAL_SEED_OFFSET, step=i)
        y = b.y.to(device)
        n = int((y != IGNORE).sum())
        total += lm_loss(model_logits(model, b, device), y).item() * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


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
