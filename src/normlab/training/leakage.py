"""Leakage guard: refuse a model that sees the future, flag a validation loss too low to be honest.

1. Before training, on a tiny batch: changing tokens t+1.. must leave the logits at positions <= t
   unchanged (a causality leak makes any loss meaningless), and targets must be the inputs shifted
   by one (a label bug such as predicting the input itself).
2. After evaluation: a validation loss below PLAUSIBLE_FRAC of the validation text's byte-unigram
   entropy, in bits per byte, is flagged. Why this bound: the unigram entropy H0 is what a model
   gets with no context at all (about 4.4 bits/byte for English prose); the best published language
   models on natural English text reach roughly 0.6-1.0 bits/byte, i.e. 15-25% of H0, and even
   the formulaic TinyStories stays above ~0.3 bits/byte (~7% of H0). Claiming to remove over 95% of
   the context-free uncertainty (< 5% of H0, ~0.22 bits/byte on English) is far outside what models
   of this lab's size reach, so it is reported as probable leakage (padding targets counted, the
   target in the input, validation text in train). Seed 000's 0.047 nats/token with GPT-2 BPE is
   about 0.015 bits/byte, 15x under this bound. The flag is a warning, not a refusal: synthetic
   tasks can be that predictable.
"""
from __future__ import annotations

import math

import functools

import torch

from ..config import ConfigError

PLAUSIBLE_FRAC = 0.05


class LeakageError(ConfigError):
    """The model or the batches leak the target: training would measure nothing."""


@torch.no_grad()
def check_causality(model, x: torch.Tensor, vocab_size: int, n_rows: int = 2,
                    src: torch.Tensor | None = None) -> None:
    """Raise LeakageError when a change at t+1.. moves any logit at positions <= t.
    For an encoder-decoder `src` is held fixed: only the decoder's (target-side) causality is checked."""
    was_training = model.training
    model.eval()
    if src is not None:
        src = src[:n_rows]
        model = functools.partial(model, src=src)
    try:
        x = x[:n_rows]
        T = x.shape[1]
        base = model(x).float()
        scale = base.abs().max().item() + 1.0
        for t in sorted({0, T // 2, T - 2}):
            changed = x.clone()
            changed[:, t + 1:] = (changed[:, t + 1:] + 1) % vocab_size
            diff = (model(changed).float()[:, : t + 1] - base[:, : t + 1]).abs().max().item()
            if not diff <= 1e-4 * scale:
                raise LeakageError(
                    f"leakage guard: the model is not causal -- changing tokens after position {t} changed "
                    f"the logits at positions <= {t} by {diff:.3g}; refusing to train (check the attention "
                    f"mask, the norm over the time axis, or a custom module)")
    finally:
        (model.func if isinstance(model, functools.partial) else model).train(was_training)


def check_targets(x: torch.Tensor, y: torch.Tensor, ignore: int) -> None:
    """Every kept target must be the next input token (packed and doc batches alike)."""
    keep = y[:, :-1] != ignore
    if not torch.equal(x[:, 1:][keep], y[:, :-1][keep]):
        raise LeakageError("leakage guard: targets are not the inputs shifted by one token; refusing to train")


def plausibility_warning(val_loss: float | None, bpb: float | None, byte_entropy_bits: float) -> str | None:
    """A warning string when the validation loss is implausibly low for the data, else None."""
    if val_loss is None or bpb is None or not math.isfinite(bpb) or not byte_entropy_bits:
        return None
    bound = PLAUSIBLE_FRAC * byte_entropy_bits
    if bpb >= bound:
        return None
    return (f"implausibly low validation loss: {val_loss:.4f} nats/token = {bpb:.4f} bits/byte, under "
            f"{PLAUSIBLE_FRAC:.0%} of the validation text's byte-unigram entropy ({byte_entropy_bits:.2f} "
            f"bits/byte -> bound {bound:.3f}); suspect leakage (padding targets, target in the input, "
            f"validation text in train)")


def overlap_warning(val_stats: dict, max_frac: float = 0.1) -> str | None:
    """Validation documents that occur verbatim in train (exact duplicates) measure memory, not modelling."""
    dup, n = val_stats.get("docs_in_train"), val_stats.get("n_docs") or 0
    if dup is None or not n or dup / n <= max_frac:
        return None
    return f"{dup} of {n} validation documents ({dup / n:.0%}) also occur verbatim in the train split"
