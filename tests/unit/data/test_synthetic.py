"""The synthetic sources (data/synthetic.py) against their stated processes: BOS at 0 and nowhere else, the
copy rule after triggers, the bigram law of the names corpus (counted here independently), the Zipf law,
determinism per data seed, and the exact entropy floor (by hand for small T, and against the Bayes-optimal
loss measured on sampled rows). Bad parameters are one ConfigError line."""
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from normlab.config import ConfigError, load_config
from normlab.data import build_corpus
from normlab.data.synthetic import SyntheticData, parse

BB = "synthetic:bigram-backcopy"


def _names_bigrams():
    import names

    folder = Path(names.__file__).resolve().parent
    found = set()
    for fname in ("dist.male.first", "dist.female.first"):
        found |= {line.split()[0].lower() for line in (folder / fname).read_text().splitlines() if line.strip()}
    pairs, unigram = Counter(), Counter()
    for n in found:
        w = "." + n + "."
        pairs.update(zip(w[:-1], w[1:]))
        unigram.update(w[:-1])
    return pairs, unigram


def _rows(source, n, T, seed=0, split="train"):
    return SyntheticData(parse(source), split, T).batch(n, seed, 0)


def test_bos_at_zero_only_and_ids_in_range():
    for source in (BB, "synthetic:bos-zipf?vocab=50&alpha=1.2"):
        p = parse(source)
        b = _rows(source, 64, 32)
        assert (b.x[:, 0] == p.bos).all() and not (b.x[:, 1:] == p.bos).any() and not (b.y == p.bos).any()
        assert b.x.min() >= 0 and b.x.max() <= p.bos and torch.equal(b.x[:, 1:], b.y[:, :-1])


def test_triggers_are_the_most_frequent_symbols():
    _, unigram = _names_bigrams()
    top = [c for c, _ in sorted(unigram.items(), key=lambda kv: (-kv[1], kv[0]))[:3]]
    p = parse(BB)
    assert [p.symbols[i] for i in p.triggers] == sorted(top) == [".", "a", "e"]
    assert len(parse(BB + "?k=5").triggers) == 5


def test_copy_rule_after_triggers_and_no_trigger_pairs():
    p = parse(BB)
    trig = set(p.triggers)
    rows = _rows(BB, 256, 64).x.numpy()
    rows = np.concatenate([rows, _rows(BB, 256, 64).y.numpy()[:, -1:]], 1)   # BOS s_1 .. s_T
    n_copies = 0
    for r in rows:
        assert r[1] not in trig
        for i in range(2, len(r)):
            if r[i - 1] in trig:
                assert r[i] == r[i - 2] and r[i - 2] not in trig
                n_copies += 1
    assert n_copies > 1000


def test_bigram_frequencies_match_the_names_corpus():
    pairs, _ = _names_bigrams()
    p = parse(BB)
    trig = set(p.triggers)
    rows = _rows(BB, 2000, 64).x.numpy()
    counts = np.zeros((27, 27))
    for r in rows:
        for a, b in zip(r[1:-1], r[2:]):
            if a not in trig:
                counts[a, b] += 1
    sym = p.symbols
    expect = np.array([[pairs[(a, b)] for b in sym] for a in sym], float)
    for a in range(27):
        if a in trig or counts[a].sum() < 2000:
            continue
        emp, law = counts[a] / counts[a].sum(), expect[a] / expect[a].sum()
        assert np.abs(emp - law).max() < 4 * np.sqrt(0.25 / counts[a].sum()) + 1e-3, sym[a]


def test_zipf_law():
    p = parse("synthetic:bos-zipf?vocab=20&alpha=1.5")
    y = _rows("synthetic:bos-zipf?vocab=20&alpha=1.5", 2000, 64).y.numpy().ravel()
    freq = np.bincount(y, minlength=20) / y.size
    law = np.arange(1, 21) ** -1.5
    law /= law.sum()
    assert np.abs(freq - law).max() < 0.01
    slope = np.polyfit(np.log(np.arange(1, 6)), np.log(freq[:5]), 1)[0]
    assert abs(slope + 1.5) < 0.1
    np.testing.assert_allclose(p.entropy_floor(64), -(law * np.log(law)).sum(), rtol=1e-12)


def test_deterministic_per_data_seed_and_split():
    d = SyntheticData(parse(BB), "train", 32)
    a, b = d.batch(8, 3, 5), d.batch(8, 3, 5)
    assert torch.equal(a.x, b.x) and torch.equal(d.replay(a.index).x, a.x)
    assert torch.equal(d.replay(a.index[2:5]).x, a.x[2:5])                        # a rank's slice regenerates
    assert not torch.equal(d.batch(8, 4, 5).x, a.x) and not torch.equal(d.batch(8, 3, 6).x, a.x)
    assert not torch.equal(SyntheticData(parse(BB), "val", 32).batch(8, 3, 5).x, a.x)


def test_entropy_floor_by_hand_for_short_rows():
    p = parse(BB)
    P, start, trigger = p.tables
    H = lambda q: -sum(x * math.log(x) for x in q if x > 0)  # noqa: E731
    h = [0.0 if trigger[b] else H(P[b]) for b in range(27)]
    assert p.entropy_floor(1) == pytest.approx(H(start))
    assert p.entropy_floor(2) == pytest.approx((H(start) + sum(start[b] * h[b] for b in range(27))) / 2)
    # T = 3: s_2's marginal mixes bigram draws only (s_1 is never a trigger)
    m2 = start @ P
    assert p.entropy_floor(3) == pytest.approx((H(start) + start @ h + m2 @ h) / 3)


def test_entropy_floor_equals_the_bayes_loss_on_sampled_rows():
    """The mean -log p(next | prefix) of the true process over sampled rows matches the exact floor."""
    p = parse(BB)
    P, start, trigger = p.tables
    T = 24
    b = SyntheticData(p, "val", T).batch(4000, 11, 0)
    x, y = b.x.numpy(), b.y.numpy()
    nll = np.empty(x.shape)
    nll[:, 0] = -np.log(start[y[:, 0]])
    for t in range(1, T):
        cur = x[:, t]
        copy = trigger[cur]
        assert (y[copy, t] == x[copy, t - 1]).all()
        nll[:, t] = np.where(copy, 0.0, -np.log(np.where(copy, 1.0, P[cur, y[:, t]])))
    per_row = nll.mean(1)
    se = per_row.std() / math.sqrt(len(per_row))
    assert abs(per_row.mean() - p.entropy_floor(T)) < 4 * se


def test_corpus_and_summary_stats():
    cfg = load_config("debug", [f"data.source={BB}", "model.block_size=64"])
    corpus = build_corpus(cfg.data, 64)
    assert corpus.tokenizer.vocab_size == 28 and corpus.tokenizer.bos == 27
    stats = corpus.val.stats
    assert stats["entropy_floor_nats"] == pytest.approx(parse(BB).entropy_floor(64))
    assert stats["eval_length"] == 64 and stats["triggers"] == [".", "a", "e"] and "Guo" in stats["process"]
    assert corpus.val.roles(corpus.val.batch(4, 0, 0).x).shape == (4, 64)


@pytest.mark.parametrize("source,words", [
    ("synthetic:bogus", ["unknown synthetic source", "bogus"]),
    ("synthetic:bos-zipf?vocab=1", ["vocab=1", "out of range"]),
    ("synthetic:bos-zipf?vocab=50001", ["vocab=50001", "out of range"]),
    ("synthetic:bos-zipf?vocab=x", ["vocab='x'", "integer"]),
    ("synthetic:bos-zipf?vocab=2.5", ["vocab='2.5'", "integer"]),
    ("synthetic:bos-zipf?alpha=-1", ["alpha=-1", "out of range"]),
    ("synthetic:bos-zipf?alpha=nan", ["alpha=nan", "out of range"]),
    ("synthetic:bos-zipf?alpha=inf", ["alpha=inf", "out of range"]),
    ("synthetic:bos-zipf?beta=1", ["unknown parameter", "beta"]),
    ("synthetic:bos-zipf?vocab", ["needs a value"]),
    ("synthetic:bos-zipf?vocab=3&vocab=4", ["given twice"]),
    ("synthetic:bigram-backcopy?k=0", ["k=0", "out of range"]),
    ("synthetic:bigram-backcopy?k=9", ["k=9", "out of range"]),
])
def test_bad_parameters_are_one_line(source, words):
    with pytest.raises(ConfigError) as err:
        load_config("debug", [f"data.source={source}"])
    msg = str(err.value)
    assert "\n" not in msg and "data.source" in msg and all(w in msg for w in words), msg


def test_listed_with_parameters():
    from click.testing import CliRunner

    from normlab.cli import main

    out = CliRunner().invoke(main, ["list", "sources"]).output
    assert "synthetic:bigram-backcopy[?k=3]" in out and "synthetic:bos-zipf[?vocab=100&alpha=1.0]" in out
