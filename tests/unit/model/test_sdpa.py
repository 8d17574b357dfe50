"""model/sdpa.py: on the CPU, bf16 q, k, v are attended in float32 (also under bf16 autocast, which would run SDPA in
bf16), the output cast back to bf16; float32 inputs take F.scaled_dot_product_attention unchanged. Checked against
the written-out causal softmax in float64."""
import math

import torch
import torch.nn.functional as F

from normlab.model.attention import SelfAttention
from normlab.model.sdpa import sdpa

from debugmodels import debug_model_config


def _inputs(dtype, B=2, H=3, T=7, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g).to(dtype).requires_grad_() for _ in range(3)]


def _written_out(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    T = q.shape[-2]
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(scores, -1) @ v


def test_float32_inputs_take_sdpa_unchanged():
    q, k, v = _inputs(torch.float32)
    assert torch.equal(sdpa(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_bf16_inputs_are_attended_in_float32_even_under_autocast():
    q, k, v = _inputs(torch.bfloat16)
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = sdpa(q, k, v, is_causal=True)
        in_bf16 = F.scaled_dot_product_attention(q, k, v, is_causal=True)   # what autocast alone would run
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)
    exact = _written_out(*(t.double() for t in (q, k, v)))
    assert (got.double() - exact).abs().max() <= (in_bf16.double() - exact).abs().max()


def test_bf16_gradients_match_the_formula_in_float64():
    q, k, v = _inputs(torch.bfloat16, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = sdpa(q, k, v, is_causal=True)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).bfloat16()
    got = torch.autograd.grad(y, (q, k, v), grad)
    ref_in = [t.detach().double().requires_grad_() for t in (q, k, v)]
    want = torch.autograd.grad(_written_out(*ref_in), ref_in, grad.double())
    for g, w in zip(got, want):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g.double(), w, rtol=0.02, atol=0.02)


def test_a_float_mask_is_attended_in_float32_too():
    q, k, v = _inputs(torch.bfloat16, T=5)
    mask = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(3)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = sdpa(q, k, v, attn_mask=mask)
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask.float()).bfloat16()
    assert torch.equal(got, want)


def test_self_attention_under_bf16_autocast_stays_close_to_float32():
    for extra in ([], ["model.attn.sink=true"]):
        torch.manual_seed(0)
        att = SelfAttention(debug_model_config(*extra))
        x = torch.randn(2, 6, att.n_head * att.head_dim)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = att(x)
        torch.testing.assert_close(low.float(), att(x), rtol=0.05, atol=0.02)
