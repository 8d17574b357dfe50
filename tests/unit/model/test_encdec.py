"""Encoder-decoder (normal and nGPT mode), the seq2seq data, inference and the CLI on it."""
import json

import pytest
import torch
from click.testing import CliRunner

from normlab.cli import main
from normlab.config import ConfigError, DataConfig, load_config
from normlab.data import IGNORE, CharTokenizer, Seq2SeqData, build_corpus
from normlab.model import EncoderDecoder, build_model, inference
from normlab.rundir import read_metrics
from normlab.training.seq2seq import task_accuracy

from debugmodels import debug_model

S2S = ["model.encoder_layers=2", "data.task=reverse", "model.pos=rope"]
MODES = {"normal": [], "ngpt": ["model.arch=ngpt", "model.norm.placement=none"]}


def _model(mode, *overrides):
    return debug_model(*S2S, *MODES[mode], *overrides).eval()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_encoder_sees_every_position(mode):
    """Changing the last source token changes the decoder's outputs at every position, even the first."""
    model = _model(mode)
    src, idx = torch.randint(0, 10, (2, 9)), torch.randint(0, 10, (2, 6))
    changed = src.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 10
    base, out = model(idx, src), model(idx, changed)
    assert isinstance(model, EncoderDecoder)
    assert ((out - base).abs().amax(dim=-1) > 1e-6).all()   # every (row, position) moved


@pytest.mark.parametrize("mode", sorted(MODES))
def test_decoder_sees_only_the_past(mode):
    model = _model(mode)
    src, idx = torch.randint(0, 10, (2, 9)), torch.randint(0, 10, (2, 12))
    base = model(idx, src)
    for t in (0, 5, 10):
        changed = idx.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % 10
        out = model(changed, src)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])


@pytest.mark.parametrize("mode", sorted(MODES))
def test_source_padding_is_invisible(mode):
    model = _model(mode)
    src, idx = torch.randint(0, 10, (1, 6)), torch.randint(0, 10, (1, 5))
    padded = torch.cat([src, torch.full((1, 4), IGNORE)], dim=1)
    torch.testing.assert_close(model(idx, padded), model(idx, src), rtol=1e-5, atol=1e-6)


def test_ngpt_mode_renormalizes_encoder_and_decoder_matrices():
    model = _model("ngpt").train()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randint(0, 10, (2, 5)), torch.randint(0, 10, (2, 7))).square().mean().backward()
    opt.step()
    model.post_step()
    for name in ("encoder.1.attn.kv", "decoder.0.cross.q", "decoder.1.mlp.proj", "wte"):
        m = model.get_submodule(name)
        assert m.weight.shape[m.unit_norm_dim] == 16                         # the d_model axis
        norms = m.weight.norm(dim=m.unit_norm_dim)
        torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-6)
    assert {n.split(".")[2] for n, _ in model.named_parameters() if ".alpha_" in n} == {
        "alpha_attn", "alpha_cross", "alpha_mlp"}


def test_seq2seq_rows_and_determinism():
    tok = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz"))
    data = Seq2SeqData(["anna", "bo", "maximilian"], tok, "reverse", block_size=8)
    assert data.targets == ["anna", "ob", "imixam"]                        # cut to block_size - 2, then reversed
    b = data.replay(torch.tensor([1, 2]))
    bos = tok.bos
    assert b.src[0].tolist() == [bos] + tok.encode("bo") + [bos] + [IGNORE] * 4
    assert b.x[0].tolist() == [bos] + tok.encode("ob") + [bos] * 4
    assert b.y[0].tolist() == tok.encode("ob") + [bos] + [IGNORE] * 4
    assert b.y[1].tolist() == tok.encode("imixam") + [bos]
    assert Seq2SeqData(["dcba"], tok, "sort", 8).targets == ["abcd"]
    first, again = data.batch(4, seed=3, step=7), data.batch(4, seed=3, step=7)
    assert torch.equal(first.src, again.src) and torch.equal(first.y, again.y)


def test_seq2seq_corpus_uses_the_fixed_split():
    corpus = build_corpus(DataConfig(task="sort"), block_size=16)
    lm = build_corpus(DataConfig(), block_size=16)
    assert len(corpus.val) == len(lm.val.docs) and corpus.val.targets[0] == "".join(sorted(corpus.val.sources[0]))


def test_task_accuracy_formula():
    acc = task_accuracy(["abc", "ab", "xbz"], ["abc", "abd", "abc"])
    assert acc["task_exact_match"] == pytest.approx(1 / 3)
    assert acc["task_char_accuracy"] == pytest.approx((3 + 2 + 1) / 9)


def test_inference_returns_a_string_and_refuses_long_input():
    cfg = load_config("debug", ["model.vocab_size=27", *S2S]).model
    model = build_model(cfg)
    tok = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz"))
    out = inference(model, tok, "maria", max_length=8)
    assert isinstance(out, str) and len(out) <= 8 and set(out) <= set(tok.chars)
    assert model.training                                                  # mode restored
    with pytest.raises(ValueError, match="at most 14"):
        inference(model, tok, "a" * 20)


@pytest.mark.parametrize("overrides,message", [
    (["data.task=reverse"], "needs an encoder-decoder, set model.encoder_layers > 0"),
    (["model.encoder_layers=2", "model.pos=rope"], "needs a seq2seq data.task"),
    ([*S2S, "model.norm.placement=post"], "model.norm.placement must be pre (got 'post')"),
    (["model.encoder_layers=2", "data.task=sort"], "set model.pos=rope (got 'learned')"),
    ([*S2S, "model.attn.logit_clamp=30"], "supports none of"),
    (["model.encoder_layers=-1"], "model.encoder_layers=-1 (CLI override 'model.encoder_layers=-1') is out of range; allowed: [0, 1024]"),
])
def test_encdec_config_refusals_say_why(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config("debug", overrides)
    assert message in str(err.value)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_tiny_seq2seq_run_trains_end_to_end_and_samples(tmp_path, mode):
    args = ["train", "debug", f"out_dir={tmp_path}", "name=s", *S2S, *MODES[mode], "train.steps=40",
            "train.lr=0.01", "train.threads=1", "model.encoder_layers=1", "model.n_layer=1"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["task_eval_size"] == 516
    assert 0 <= summary["task_exact_match"] <= summary["task_char_accuracy"] <= 1
    losses = [m["loss"] for m in read_metrics(tmp_path / "s" / "metrics.jsonl") if "loss" in m]
    assert sum(losses[-5:]) < sum(losses[:5])                                # it learns
    samples = (tmp_path / "s" / "samples.txt").read_text().splitlines()
    assert len(samples) == 3 and all(" -> " in s for s in samples)
    one = CliRunner().invoke(main, ["sample", str(tmp_path / "s"), "--prompt", "maria"])
    assert one.exit_code == 0 and len(one.output.strip().splitlines()) == 1
    bad = CliRunner().invoke(main, ["sample", str(tmp_path / "s"), "--prompt", "x" * 30])
    assert bad.exit_code == 2 and "at most 14" in bad.output
