"""Leakage guard (causality, targets, implausible loss), probe maxima, and a BPE run's summary."""
import json
import math

import pytest
import torch

import normlab as nl
from normlab.training import leakage, setup
from normlab.training.leakage import LeakageError, check_causality, check_targets, plausibility_warning

from debugmodels import debug_model


class _Peeking(torch.nn.Module):
    """Logits at t depend on the mean embedding of the whole sequence: a leak through the time axis."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, idx):
        return self.inner(idx) + self.inner.wte(idx).mean(dim=1, keepdim=True) @ self.inner.lm_head.weight.T


def test_causal_model_passes_and_peeking_model_is_refused():
    model = debug_model()
    x = torch.randint(0, 11, (2, 12))
    check_causality(model, x, 11)
    with pytest.raises(LeakageError, match="not causal -- changing tokens after position 0"):
        check_causality(_Peeking(model), x, 11)


def test_targets_must_be_the_next_token():
    x = torch.randint(0, 11, (2, 9))
    check_targets(x[:, :-1], x[:, 1:], -1)
    with pytest.raises(LeakageError, match="not the inputs shifted by one"):
        check_targets(x, x, -1)


def test_train_refuses_a_leaky_model(tiny, monkeypatch):
    monkeypatch.setattr(setup, "build_model", lambda cfg: _Peeking(nl.build_model(cfg)))
    with pytest.raises(LeakageError, match="refusing to train"):
        nl.train(tiny("name=leak"))


def test_seed_000_loss_gets_a_warning_and_honest_losses_do_not():
    # seed 000: 0.047 nats/token, GPT-2 BPE on WikiText (~4.5 bytes/token), text entropy ~4.4 bits/byte
    bpb = 0.047 / (4.5 * math.log(2))
    msg = plausibility_warning(0.047, bpb, 4.4)
    assert msg and "implausibly low" in msg and "0.0470 nats/token" in msg
    assert plausibility_warning(3.3, 3.3 / (4.5 * math.log(2)), 4.4) is None   # a GPT-2-small-like loss
    assert plausibility_warning(0.9, 0.9 / (4.1 * math.log(2)), 4.4) is None   # a strong TinyStories model
    assert leakage.PLAUSIBLE_FRAC * 4.4 > bpb * 10


def test_probe_maxima_match_a_hand_computation():
    """The probes that replaced train/watch.py: max |residual| per block and max attention logit (before clamp)."""
    model = debug_model("model.pos=rope", "model.d_model=16", "model.n_head=2").eval()
    x = torch.randint(0, 11, (2, 10))
    outs, qs, ks = [], [], []
    hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o)) for b in model.blocks]
    hooks += [b.attn.tap_q.register_forward_hook(lambda m, i, o: qs.append(o)) for b in model.blocks]
    hooks += [b.attn.tap_k.register_forward_hook(lambda m, i, o: ks.append(o)) for b in model.blocks]
    got = nl.probe_model(model, x, ["logit_stats", "massive_activations"])
    for h in hooks:
        h.remove()
    for layer, (o, q, k) in enumerate(zip(outs, qs, ks)):
        s = (q.double() @ k.double().transpose(-2, -1)) / math.sqrt(q.shape[-1])
        logit = max(s[..., t, : t + 1].max().item() for t in range(10))
        assert got["logit_stats"][f"attn_max/layer{layer}"] == pytest.approx(logit, rel=1e-5)
        assert got["massive_activations"][f"top1/layer{layer}"] == pytest.approx(o.abs().max().item(), rel=1e-6)
    assert all(not b._forward_hooks for b in model.blocks)


def test_bpe_run_reports_bpb_perplexity_and_probe_peaks(tmp_path, tiny):
    text = tmp_path / "t.txt"
    text.write_text("".join(f"the cat number {i % 17} sat on mat {i % 5}.\n" for i in range(400)))
    cfg = tiny("name=bpe", "data.tokenizer=bpe", f"data.source=text:{text}", "data.bpe_vocab_size=300",
               f"data.cache_dir={tmp_path / 'cache'}", "probes.every=5", "train.steps=10")
    s = nl.train(cfg)
    val = s["data"]["val"]
    assert s["val_bpb"] == pytest.approx(s["val_loss"] * val["n_tokens"] / (val["n_bytes"] * math.log(2)))
    assert s["val_ppl"] == pytest.approx(math.exp(s["val_loss"]))
    assert s["max_act"] > 0 and s["max_attn_logit"] > 0
    # 85 distinct lines repeated: every validation line also sits in train, and the guard says so
    assert len(s["warnings"]) == 1 and "validation documents (100%) also occur verbatim" in s["warnings"][0]
    metrics = [json.loads(line) for line in (tmp_path / "bpe" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "probe/massive_activations/top1/layer0" in m] == [0, 5, 10]
    assert json.loads((tmp_path / "bpe" / "tokenizer.json").read_text())["model"]["type"] == "BPE"
