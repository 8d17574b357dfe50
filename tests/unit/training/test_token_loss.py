"""training/token_loss.py: the blockwise cross-entropy and log-sum-exp of bf16 logits against the formula in float64
(ignored targets, z-loss, several blocks and a ragged last one), and its use by lm_loss and the stack's
member_losses; float32 logits keep F.cross_entropy bit for bit."""
import pytest
import torch
import torch.nn.functional as F

from normlab.data import IGNORE
from normlab.training import token_loss
from normlab.training.stacked import member_losses
from normlab.training.step import lm_loss


def _case(N=23, V=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(N, V, generator=g)).bfloat16()
    target = torch.randint(0, V, (N,), generator=g)
    target[[2, 7, 19]] = IGNORE
    return logits, target


def _formula(logits64, target):
    """(ce per row, 0 where ignored; lse per row), written out."""
    lse = logits64.exp().sum(-1).log()
    keep = target != IGNORE
    picked = logits64.gather(1, target.clamp(min=0)[:, None])[:, 0]
    return (lse - picked) * keep, lse


@pytest.fixture(params=[10**6, 3 * 11], ids=["one block", "ragged blocks"])
def blocks(request, monkeypatch):
    monkeypatch.setattr(token_loss, "BLOCK_ELEMENTS", request.param)   # 33 elements: 3 rows a block, 23 rows


def test_values_and_gradients_match_the_formula_in_float64(blocks):
    logits, target = _case()
    x = logits.clone().requires_grad_()
    ce, lse = token_loss.bf16_token_losses(x, target)
    x64 = logits.double().requires_grad_()
    ce64, lse64 = _formula(x64, target)
    assert ce.dtype == lse.dtype == torch.float32
    torch.testing.assert_close(ce.double(), ce64, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(lse.double(), lse64, rtol=1e-6, atol=1e-5)
    assert torch.all(ce[target == IGNORE] == 0)
    g = torch.Generator().manual_seed(5)
    w_ce, w_lse = torch.randn(23, generator=g), torch.randn(23, generator=g)
    (ce * w_ce + lse * w_lse).sum().backward()
    (ce64 * w_ce.double() + lse64 * w_lse.double()).sum().backward()
    assert x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=0.01, atol=1e-3)   # bf16 rounding of the result


def test_a_gradient_through_ce_alone_or_lse_alone(blocks):
    logits, target = _case(seed=1)
    for pick in (0, 1):
        x = logits.clone().requires_grad_()
        token_loss.bf16_token_losses(x, target)[pick].sum().backward()
        x64 = logits.double().requires_grad_()
        _formula(x64, target)[pick].sum().backward()
        torch.testing.assert_close(x.grad.double(), x64.grad, rtol=0.01, atol=1e-3)


@pytest.mark.parametrize("z", [0.0, 1e-2])
def test_lm_loss_of_bf16_logits_equals_the_float32_route(blocks, z):
    logits, target = _case(N=24, seed=2)
    logits3, target2 = logits.view(2, 12, 11), target.view(2, 12)
    x = logits3.clone().requires_grad_()
    got = lm_loss(x, target2, z)
    ref_in = logits3.float().requires_grad_()
    flat = ref_in.view(-1, 11)
    want = F.cross_entropy(flat, target, ignore_index=IGNORE)
    if z:
        want = want + z * torch.logsumexp(flat[target != IGNORE], -1).pow(2).mean()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    got.backward()
    want.backward()
    torch.testing.assert_close(x.grad.float(), ref_in.grad.bfloat16().float(), rtol=0.01, atol=1e-4)


def test_float32_logits_keep_f_cross_entropy_bit_for_bit():
    logits, target = _case(seed=3)
    flat = logits.float()
    assert torch.equal(lm_loss(flat, target), F.cross_entropy(flat, target, ignore_index=IGNORE))


def test_member_losses_of_bf16_logits_equal_each_member_alone(blocks):
    E = 3
    logits, target = _case(N=E * 8, seed=4)
    logits4, y = logits.view(E, 2, 4, 11), target.view(E, 2, 4)
    z = torch.tensor([0.0, 1e-2, 0.0])
    got = member_losses(logits4.reshape(E * 2, 4, 11), y.reshape(E * 2, 4), E, z)
    want = torch.stack([lm_loss(logits4[e].float(), y[e], float(z[e])) for e in range(E)])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_a_member_with_no_target_left_has_loss_zero_and_no_gradient():
    logits, target = _case(N=24, seed=6)
    target[12:] = IGNORE                                # the second of two members has nothing to predict
    x = logits.clone().requires_grad_()
    loss = token_loss.bf16_lm_losses(x, target, 2, torch.tensor([1e-2, 1e-2]))
    assert loss[1] == 0 and loss[0] > 0
    loss.sum().backward()
    assert torch.all(x.grad[12:] == 0) and torch.any(x.grad[:12] != 0)
