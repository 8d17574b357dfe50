import pytest
import torch

from normlab.config import ConfigError, DataConfig, load_config
from normlab.data import IGNORE, CharTokenizer, MemmapTokens, TokenData, build_corpus, load_documents, split_documents


def test_names_corpus_ships_with_the_install():
    docs = load_documents("names")
    assert len(docs) == 5163 and docs == sorted(set(docs))
    assert all(d.isalpha() and d.islower() for d in docs)


def test_names_tokenizer_has_27_symbols():
    tok = CharTokenizer.fit(load_documents("names"))
    assert tok.vocab_size == 27 and tok.bos == 26
    assert tok.decode(tok.encode("emma") + [tok.bos]) == "emma"


def test_split_is_fixed_and_disjoint():
    docs = [f"d{i}" for i in range(100)]
    train, val = split_documents(docs, 0.1, 1234)
    assert (train, val) == split_documents(docs, 0.1, 1234)
    assert len(val) == 10 and not set(train) & set(val) and set(train) | set(val) == set(docs)


def test_doc_batches_hold_one_bounded_document_per_row():
    corpus = build_corpus(DataConfig(batching="doc"), block_size=16)
    b = corpus.train.batch(4, seed=0, step=0)
    bos = corpus.tokenizer.bos
    for row in range(4):
        n = int((b.y[row] != IGNORE).sum())
        assert b.x[row, 0] == bos and b.y[row, n - 1] == bos       # [BOS] name [BOS]
        assert torch.equal(b.x[row, 1:n], b.y[row, : n - 1])       # targets are inputs shifted by one
        assert (b.y[row, n:] == IGNORE).all()


def test_packed_batches_are_shifted_windows_and_depend_only_on_seed_and_step():
    corpus = build_corpus(DataConfig(batching="packed"), block_size=8)
    a, b, c = (corpus.train.batch(3, 0, 5), corpus.train.batch(3, 0, 5), corpus.train.batch(3, 0, 6))
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert torch.equal(a.x[:, 1:], a.y[:, :-1])
    assert torch.equal(corpus.train.replay(a.index).x, a.x)


def test_text_source_reads_local_files(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("hello world\nsecond line\n\nthird\n")
    assert load_documents(f"text:{path}") == ["hello world", "second line", "third"]
    (tmp_path / "more.txt").write_text("fourth\n")
    assert len(load_documents(f"text:{tmp_path}")) == 4


def test_text_source_errors_are_specific(tmp_path):
    with pytest.raises(ConfigError, match="no such file or folder"):
        load_documents(f"text:{tmp_path / 'nope.txt'}")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_documents(f"text:{tmp_path / 'bin.txt'}")
    with pytest.raises(ConfigError, match="unknown; choose one of: names, tinystories"):
        load_documents("wikitext9")


def test_tokenizer_rejects_unknown_characters():
    with pytest.raises(ValueError, match="not in the vocabulary"):
        CharTokenizer(list("ab")).encode("abc")


def _stream_data(block_size, mode="packed"):
    """One document 'ab': the stream [B] a b [B] holds 4 tokens, so 4 - block_size windows."""
    return TokenData(["ab"], CharTokenizer(list("ab")), mode, block_size, name="the tiny split")


def test_packed_windows_include_the_last_start():
    starts = {int(i) for step in range(40) for i in _stream_data(2).batch_index(4, seed=0, step=step)}
    assert starts == {0, 1}                     # start 1 = len(stream) - block_size - 1, the last window
    only = _stream_data(3)                      # block_size + 1 tokens: exactly one window
    b = only.batch(2, seed=0, step=0)
    assert b.index.tolist() == [0, 0] and b.x.tolist() == [[2, 0, 1]] * 2 and b.y.tolist() == [[0, 1, 2]] * 2


def test_memmap_windows_include_the_last_start(tmp_path):
    import numpy as np

    path = tmp_path / "train.bin"
    np.arange(5, dtype=np.uint16).tofile(path)
    stats = {"dtype": "uint16", "n_tokens": 5, "n_bytes": 5}
    starts = {int(i) for step in range(40) for i in MemmapTokens(path, stats, 3).batch_index(4, 0, step)}
    assert starts == {0, 1}
    one = MemmapTokens(path, stats, 4).batch(3, 0, 0)
    assert one.x.tolist() == [[0, 1, 2, 3]] * 3 and one.y.tolist() == [[1, 2, 3, 4]] * 3
    with pytest.raises(ConfigError) as err:
        MemmapTokens(path, stats, 5)
    assert str(err.value) == (f"the train split ({path}) has 5 tokens, but model.block_size=5 needs at least 6; "
                              "use more text (data.max_bytes) or a smaller model.block_size")


def test_block_size_beyond_a_char_stream_names_both_numbers():
    with pytest.raises(ConfigError) as err:
        _stream_data(4)
    assert str(err.value).startswith("the tiny split has 4 tokens, but model.block_size=4 needs at least 5;")
    assert _stream_data(99, mode="doc").batch(1, 0, 0).x.shape == (1, 99)   # doc rows pad instead


def _capped_by_hand(docs, cap):
    kept, total = [], 0
    for d in docs:
        if total >= cap:
            break
        kept.append(d)
        total += len(d.encode())
    return kept


def test_char_path_honours_max_bytes(tmp_path):
    lines = [f"document {i:03d} é" for i in range(200)]      # 15 bytes each (é is two)
    path, val = tmp_path / "train.txt", tmp_path / "val.txt"
    path.write_text("\n".join(lines) + "\n")
    val.write_text("\n".join(lines[:50]) + "\n")
    corpus = build_corpus(DataConfig(source=f"text:{path}", val_source=f"text:{val}", max_bytes=100), block_size=8)
    assert corpus.train.stats["n_docs"] == 7 and corpus.val.stats["n_docs"] == 7   # 6 * 15 < 100 <= 7 * 15
    assert corpus.tokenizer.decode(corpus.train.docs[6].tolist()) == lines[6]
    held = build_corpus(DataConfig(source=f"text:{path}", max_bytes=50, val_frac=0.5), block_size=8)
    train, val_docs = split_documents(lines, 0.5, 1234)
    assert held.train.stats["n_docs"] == len(_capped_by_hand(train, 50)) == 4
    assert held.val.stats["n_docs"] == len(_capped_by_hand(val_docs, 50)) == 4
    assert build_corpus(DataConfig(source=f"text:{path}"), block_size=8).train.stats["n_docs"] == 180   # 0 = all
    with pytest.raises(ConfigError, match=r"data.max_bytes=-1 \(CLI override 'data.max_bytes=-1'\) is out of range; allowed: \[0, 2\^50\]"):
        load_config("debug", ["data.max_bytes=-1"])


@pytest.mark.parametrize("batching", ["doc", "packed"])
def test_a_split_left_empty_is_a_config_error(tmp_path, batching):
    path = tmp_path / "two.txt"
    path.write_text("first\nsecond\n")
    with pytest.raises(ConfigError, match=r"the train split has no documents .*val_frac=0.9"):
        build_corpus(DataConfig(source=f"text:{path}", val_frac=0.9, batching=batching), block_size=8)


def test_shared_corpora_builds_each_corpus_once_and_only_inside_its_block(tmp_path):
    from normlab.data import batching

    names = load_config("prepost").data
    with batching.shared_corpora():
        a, b = batching.build_corpus(names, 16), batching.build_corpus(names, 16)
        assert a is b                                                  # one text, tokenized once
        assert batching.build_corpus(names, 8) is not a               # another block size is another corpus
        with batching.shared_corpora():                                # nested: the same memo
            assert batching.build_corpus(names, 16) is a
    assert batching.build_corpus(names, 16) is not a                  # outside: built afresh
    text = tmp_path / "t.txt"
    text.write_text("abc\nabd\n")
    cfg = load_config("prepost", [f"data.source=text:{text}"]).data
    with batching.shared_corpora():
        first = batching.build_corpus(cfg, 16)
    text.write_text("xyz\nxyw\n")                                       # edited between two set-ups
    with batching.shared_corpora():
        again = batching.build_corpus(cfg, 16)
    assert again.fingerprint != first.fingerprint and again.tokenizer.decode(again.tokenizer.encode("xyz")) == "xyz"


def test_a_stack_tokenizes_its_text_once(tmp_path, monkeypatch):
    from normlab.data import batching
    from normlab.training.stacked_loop import train_stacked

    built = []
    real = batching._build_corpus
    monkeypatch.setattr(batching, "_build_corpus", lambda cfg, block: built.append(block) or real(cfg, block))
    cfgs = [load_config("prepost", [f"out_dir={tmp_path}", f"name=m{s}", f"train.seed={s}", "train.steps=2",
                                       "train.eval_every=2", "train.eval_batches=1", "probes.every=0",
                                       "sample.n=0"]) for s in range(3)]
    train_stacked(cfgs, [tmp_path / c.name for c in cfgs])
    assert built == [16]
    assert all((tmp_path / c.name / "summary.json").exists() for c in cfgs)
