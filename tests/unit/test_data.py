import pytest
import torch

from normlab.config import ConfigError, DataConfig
from normlab.data import IGNORE, CharTokenizer, build_corpus, load_documents, split_documents


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
