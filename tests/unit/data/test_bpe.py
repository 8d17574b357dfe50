"""Byte-level BPE, token memmaps and their cache, held-out splits, bits per byte."""
import inspect
import json
import math
import sys

import numpy as np
import pytest
import torch

from normlab.config import ConfigError, load_config
from normlab.data import BPETokenizer, CharTokenizer, build_corpus, load_tokenizer, prepare_bpe
from normlab.data import tokens as tokens_mod
from normlab.data.bpe import chunks
from normlab.data.tokens import bits_per_byte, byte_entropy, encode_split

WORDS = "the cat sat on the mat and a dog ran to the big red house where ünïcödé birds sing".split()


def _corpus(tmp_path, n=300):
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=12)) for _ in range(n)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


def _data_cfg(tmp_path, path, *overrides):
    return load_config("debug", ["data.tokenizer=bpe", f"data.source=text:{path}", "data.bpe_vocab_size=300",
                                 f"data.cache_dir={tmp_path / 'cache'}", *overrides]).data


def test_bpe_roundtrip_and_special_boundary(tmp_path):
    _, lines = _corpus(tmp_path)
    tok = BPETokenizer.train(iter(lines), 300, ["<|endoftext|>", "<|pad|>"])
    assert tok.vocab_size == 300 and tok.bos == 0
    for text in ["the cat sat", "ünïcödé 🙂 never seen bytes\tand tabs"]:
        assert tok.decode(tok.encode(text)) == text      # byte-level: any text encodes
    assert tok.encode("<|endoftext|>") == [tok.bos]
    path = tmp_path / "tok.json"
    tok.save(path)
    again = load_tokenizer(path)
    assert again.encode("the mat") == tok.encode("the mat") and again.bos == tok.bos


def test_chunked_encoding_equals_one_pass(tmp_path):
    """Streaming in chunks (a corpus larger than memory) writes exactly the ids of one big encode."""
    _, lines = _corpus(tmp_path)
    tok = BPETokenizer.train(iter(lines), 300, ["<|endoftext|>"])
    stats = encode_split(tok, iter(lines), tmp_path / "a.bin", None, None)
    expected = [tok.bos] + [i for line in lines for i in tok.encode(line) + [tok.bos]]
    got = np.fromfile(tmp_path / "a.bin", dtype=np.uint16).tolist()
    assert got == expected and stats["n_tokens"] == len(expected)
    assert stats["n_bytes"] == sum(len(s.encode()) + 1 for s in lines)
    assert len(list(chunks(iter(lines), max_chars=100))) > 30


def test_memmap_cache_is_reused_and_rebuilt_on_change(tmp_path, monkeypatch):
    path, _ = _corpus(tmp_path)
    tok, stats, folder = prepare_bpe(_data_cfg(tmp_path, path))
    assert stats["train"]["dtype"] == "uint16" and (folder / "train.bin").exists()

    def no_training(*a, **k):
        raise AssertionError("retrained although text and settings are unchanged")
    monkeypatch.setattr(tokens_mod.BPETokenizer, "train", no_training)
    assert prepare_bpe(_data_cfg(tmp_path, path))[2] == folder
    monkeypatch.undo()
    assert prepare_bpe(_data_cfg(tmp_path, path, "data.bpe_vocab_size=290"))[2] != folder
    path.write_text(path.read_text() + "a new line of text\n")
    assert prepare_bpe(_data_cfg(tmp_path, path))[2] != folder


def test_held_out_split_is_fixed_and_disjoint(tmp_path):
    path, lines = _corpus(tmp_path)
    corpus = build_corpus(_data_cfg(tmp_path, path, "data.val_frac=0.2"), block_size=16)
    tr, va = corpus.train.stats, corpus.val.stats
    assert tr["n_docs"] + va["n_docs"] == len(lines) and 30 < va["n_docs"] < 90
    assert va["docs_in_train"] is not None
    again = build_corpus(_data_cfg(tmp_path, path, "data.val_frac=0.2"), block_size=16)
    assert torch.equal(again.val.batch(4, 0, 3).x, corpus.val.batch(4, 0, 3).x)


def test_separate_val_source_and_memmap_batches(tmp_path):
    path, _ = _corpus(tmp_path)
    val = tmp_path / "val.txt"
    val.write_text("the red bird sat on the house\nthe dog and the cat\n" * 5)
    corpus = build_corpus(_data_cfg(tmp_path, path, f"data.val_source=text:{val}"), block_size=8)
    assert corpus.val.stats["n_docs"] == 10
    a, b = corpus.train.batch(3, 0, 5), corpus.train.batch(3, 0, 5)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, corpus.train.batch(3, 0, 6).x)
    assert torch.equal(a.x[:, 1:], a.y[:, :-1]) and a.x.dtype == torch.long
    assert torch.equal(corpus.train.replay(a.index).y, a.y)


def test_bits_per_byte_and_entropy_by_hand():
    assert bits_per_byte(2.0, 4.0) == pytest.approx(2.0 / (4.0 * math.log(2)))
    # loss_nats * tokens / (bytes * ln 2) with 1000 tokens for 3700 bytes
    assert bits_per_byte(1.5, 3700 / 1000) == pytest.approx(1.5 * 1000 / (3700 * math.log(2)))
    hist = np.array([1, 1, 2] + [0] * 253)
    assert byte_entropy(hist) == pytest.approx(-(0.25 * math.log2(0.25) * 2 + 0.5 * math.log2(0.5)))


def test_bpe_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="needs data.batching=packed"):
        load_config("debug", ["data.tokenizer=bpe", "data.batching=doc"])
    with pytest.raises(ConfigError, match=r"allowed: \[257, 2\^20\]"):
        load_config("debug", ["data.tokenizer=bpe", "data.bpe_vocab_size=100"])
    with pytest.raises(ConfigError, match="at least 256 byte symbols"):   # + 3 special tokens
        load_config("debug", ["data.tokenizer=bpe", "data.bpe_vocab_size=258", "data.special_tokens=[a, b, c]"])


def test_decode_returns_every_non_boundary_special_token_verbatim(tmp_path):
    """HF's decode(skip_special_tokens=False) sends special tokens through the ByteLevel decoder,
    which maps their characters as byte symbols: '<|café|>' came back as '<|caf\ufffd|>'."""
    _, lines = _corpus(tmp_path)
    tok = BPETokenizer.train(iter(lines), 300, ["<|endoftext|>", "<|end of turn|>", "<|café|>"])
    text = "the cat<|end of turn|> sat <|café|>on<|endoftext|> the mat<|café|>"
    ids = tok.encode(text)
    assert ids.count(tok.bos) == 1 and len(ids) < len(text)
    assert tok.decode(ids) == "the cat<|end of turn|> sat <|café|>on the mat<|café|>"


def test_tokenizer_json_without_special_tokens(tmp_path):
    _, lines = _corpus(tmp_path)
    path = tmp_path / "tokenizer.json"
    BPETokenizer.train(iter(lines), 300, ["<|endoftext|>"]).save(path)
    data = json.loads(path.read_text())
    data["added_tokens"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        load_tokenizer(path)
    assert str(err.value) == (f"{path}: the tokenizer has no special (added) token; a boundary special token is "
                              "required (the first one separates documents)")


@pytest.mark.parametrize("text", ['{"kind": "char", "chars": ["a", "b"', '{"kind": "char", "chars": "ab"}',
                                  '{"kind": "char"}', '{"version": "1.0", "added_tokens": [], "model": ', "[1, 2]"])
def test_unreadable_tokenizer_json_names_the_file(tmp_path, text):
    path = tmp_path / "tokenizer.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_tokenizer(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_encode_iterable_streams_exactly_the_ids_of_one_encode(tmp_path):
    path, lines = _corpus(tmp_path)
    tok = BPETokenizer.train(iter(lines), 300, ["<|endoftext|>", "<|end of turn|>"])
    # runs of spaces, tabs, CRLF, a special token with a space inside, leading/trailing space
    extra = "  the  cat\t\tsat \r\n\n  on<|end of turn|> the mat<|endoftext|>ünï  \n   \n"
    path.write_text(path.read_text() + extra * 50)
    whole = tok.encode(path.read_text())
    with open(path) as f:
        ids = tok.encode_iterable(f, max_chars=64)       # a small max_chars: hundreds of cuts
        assert inspect.isgenerator(ids)
        assert list(ids) == whole
    for max_chars in (0, 1, 7, 1 << 16):                 # from a cut at every safe point to none
        with open(path) as f:
            assert list(tok.encode_iterable(f, max_chars=max_chars)) == whole
    char = CharTokenizer.fit(lines)
    assert inspect.isgenerator(char.encode_iterable(iter(lines)))
    assert list(char.encode_iterable(iter(lines))) == char.encode("".join(lines))


def test_a_document_longer_than_a_batch_is_streamed_to_the_same_ids(tmp_path, monkeypatch):
    _, lines = _corpus(tmp_path)
    tok = BPETokenizer.train(iter(lines), 300, ["<|endoftext|>"])
    docs = ["a short one", " ".join(lines), "tail"]           # the middle one is ~20x max_chars
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return BPETokenizer.encode_iterable(tok, *args, **kwargs)
    monkeypatch.setattr(tok, "encode_iterable", counted)
    stats = encode_split(tok, iter(docs), tmp_path / "a.bin", None, None, max_chars=1000)
    expected = [tok.bos] + [i for d in docs for i in tok.encode(d) + [tok.bos]]
    assert np.fromfile(tmp_path / "a.bin", dtype=np.uint16).tolist() == expected and calls == [1]
    assert stats["n_tokens"] == len(expected) and stats["n_docs"] == 3


def test_vocab_size_is_bounded_before_the_library_aborts():
    with pytest.raises(ConfigError) as err:
        load_config("debug", ["data.tokenizer=bpe", "data.bpe_vocab_size=1000000000"])
    assert str(err.value).startswith("data.bpe_vocab_size=1000000000 (CLI override") and "[257, 2^20]" in str(err.value)
    assert load_config("debug", ["data.tokenizer=bpe", f"data.bpe_vocab_size={2 ** 20}"]).data.bpe_vocab_size == 2 ** 20


def test_bpe_without_the_tokenizers_package(tmp_path, monkeypatch):
    path, lines = _corpus(tmp_path)
    saved = tmp_path / "tok.json"
    BPETokenizer.train(iter(lines), 300, ["<|endoftext|>"]).save(saved)
    monkeypatch.setitem(sys.modules, "tokenizers", None)    # what `import tokenizers` sees when it is missing
    msg = "data.tokenizer=bpe needs the tokenizers package: pip install 'normlab[hf]'"
    for call in (lambda: BPETokenizer.train(iter(lines), 300, ["<|endoftext|>"]), lambda: load_tokenizer(saved),
                 lambda: prepare_bpe(_data_cfg(tmp_path, path))):
        with pytest.raises(ConfigError) as err:
            call()
        assert str(err.value) == msg
    assert not (tmp_path / "cache").exists()   # refused before any cache (or a good one) is touched
