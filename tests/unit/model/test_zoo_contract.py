"""Contract over every registered norm kind x every valid placement (the validity matrix's 'ok' cells).

Where a
placement has no norm slot and no final norm (none, rezero) every kind builds the same model, so
`none` is checked with model.norm.final=always (the kind becomes the final norm) and `rezero`, which
refuses a final norm, once.
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

from normlab.config import load_config
from normlab.model import build_model, kind_is_used, pair_reason, valid_pairs

from causality import assert_causal  # tests/unit/causality.py
from debugmodels import debug_model_config

V, T = 11, 8


def contract_cases() -> list[tuple[str, str, str]]:
    """(kind, placement, model.norm.final) covering every valid pair without duplicate models."""
    cases, seen = [], set()
    for kind, placement in valid_pairs():
        if kind_is_used(placement):
            cases.append((kind, placement, "auto"))
        elif pair_reason(kind, placement) is None and placement == "none":
            cases.append((kind, placement, "always"))
        elif placement not in seen:
            cases.append((kind, placement, "auto"))
        seen.add(placement)
    return cases


def _causal_cfg(*overrides):
    return load_config("debug", [f"model.vocab_size={V}", *overrides]).model


def _cfg(kind, placement, final="auto"):
    return debug_model_config(f"model.norm.kind={kind}", f"model.norm.final={final}", f"model.norm.placement={placement}",
                              "model.block_size=8", vocab=V)


@pytest.mark.parametrize("kind,placement,final", contract_cases())
def test_pair_contract(kind, placement, final):
    torch.manual_seed(0)
    model = build_model(_cfg(kind, placement, final))
    idx = torch.randint(0, V, (4, T))
    targets = torch.roll(idx, -1, dims=1)

    logits = model(idx)
    assert logits.shape == (4, T, V) and logits.dtype == torch.float32
    assert model.double()(idx).dtype == torch.float64
    model.float()
    loss = F.cross_entropy(model(idx).view(-1, V), targets.view(-1))
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name

    clone = build_model(_cfg(kind, placement, final))
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone(idx), model(idx), rtol=0, atol=0)

    # learns: the loss falls by 0.05 within 20 Adam steps (most pairs need < 10; gated_dyt x peri, whose gated,
    # squashed outputs start at ~1/4 of DyT's, sits on a plateau for ~10 steps first)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        opt.zero_grad()
        loss = F.cross_entropy(model(idx).view(-1, V), targets.view(-1))
        first = loss.item() if first is None else first
        if loss.item() < first - 0.05:
            break
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.05, f"{kind} x {placement}: loss {first:.3f} -> {loss.item():.3f}"


CASES = [(p, k, final, pos) for (k, p, final), pos in itertools.product(contract_cases(), ["learned", "rope"])]


@pytest.mark.parametrize("placement,kind,final,pos", CASES)
def test_causality(placement, kind, final, pos):
    """Changing token t+1 never changes the logits at positions <= t (every valid norm x placement)."""
    model = build_model(_causal_cfg(f"model.norm.placement={placement}", f"model.norm.kind={kind}",
                                    f"model.norm.final={final}", f"model.pos={pos}")).eval()
    assert_causal(model, vocab_size=11)
