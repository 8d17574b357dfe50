"""Validation loss: joining tiny batches into one forward gives the per-batch definition's number."""
import pytest
import torch

import normlab as nl
from normlab.data import IGNORE, build_corpus
from normlab.training import evaluation
from normlab.training.step import lm_loss


def _setup(overrides):
    cfg = nl.load_config("prepost", overrides)
    corpus = build_corpus(cfg.data, cfg.model.block_size)
    cfg.model.vocab_size = corpus.tokenizer.vocab_size
    torch.manual_seed(0)
    return cfg, nl.build_model(cfg.model).double(), corpus.val


def _per_batch(model, data, cfg) -> float:
    """The definition, one batch at a time: each batch's mean loss weighted by its number of targets."""
    total = count = 0
    for i in range(cfg.train.eval_batches):
        b = data.batch(cfg.train.batch_size, seed=cfg.data.split_seed + evaluation.EVAL_SEED_OFFSET, step=i)
        n = int((b.y != IGNORE).sum())
        total += lm_loss(model(b.x), b.y).item() * n
        count += n
    return total / count


@pytest.mark.parametrize("overrides", [[], ["data.batching=packed", "train.batch_size=3", "train.eval_batches=7"]])
def test_joined_batches_give_the_per_batch_loss_in_fewer_forwards(overrides, monkeypatch):
    cfg, model, val = _setup(overrides)
    model.eval()
    forwards = []
    model.register_forward_hook(lambda m, args, out: forwards.append(args[0].shape[0]))
    with torch.no_grad():
        want = _per_batch(model, val, cfg)
    forwards.clear()
    got = evaluation.evaluate(model, val, cfg, torch.device("cpu"))
    assert got == pytest.approx(want, rel=1e-6)   # the cross-entropy is taken in float32 (lm_loss too): sums in another order
    assert forwards == [cfg.train.batch_size * cfg.train.eval_batches]   # one forward of every row
    forwards.clear()
    budget = 2 * cfg.train.batch_size * cfg.model.block_size * cfg.model.vocab_size   # two batches a forward
    monkeypatch.setattr(evaluation, "EVAL_LOGITS", budget)
    assert evaluation.evaluate(model, val, cfg, torch.device("cpu")) == pytest.approx(want, rel=1e-6)
    rows = cfg.train.batch_size
    assert forwards == [2 * rows] * (cfg.train.eval_batches // 2) + [rows] * (cfg.train.eval_batches % 2)
    assert model.training is False   # it was in eval mode before the call, and is again
