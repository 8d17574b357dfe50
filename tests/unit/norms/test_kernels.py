"""The CPU kernels (norms/kernels.py) against autograd of the written-out formulas: float64
gradcheck of every hand-written backward, float32 agreement, and that the norms really take them."""
import pytest
import torch

from normlab.config import NormConfig
from normlab.norms import build_norm, kernels

GEN = torch.Generator().manual_seed(0)


def _x(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, generator=GEN).requires_grad_()


def _param(*shape, dtype=torch.float64):
    return (torch.randn(*shape, dtype=dtype, generator=GEN) + 1.5).requires_grad_()


@pytest.mark.parametrize("with_weight", [True, False])
def test_rms_norm_gradcheck(with_weight):
    x, w = _x(3, 4, 7), _param(7) if with_weight else None
    args = (x, w) if with_weight else (x,)
    assert torch.autograd.gradcheck(lambda x, w=None: kernels.rms_norm(x, w, 1e-6), args)


def test_rms_norm_matches_formula():
    x, w = _x(2, 5, 8), _param(8)
    expected = w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(kernels.rms_norm(x, w, 1e-6), expected)


def test_scale_norm_gradcheck_and_clamped_rows():
    x, g = _x(4, 6), _param(())
    with torch.no_grad():
        x[1] *= 1e-4                      # ||row 1|| < eps: clamped, gradient g / eps * gy
    eps = 1e-3
    assert torch.autograd.gradcheck(lambda x, g: kernels.scale_norm(x, g, eps), (x, g))
    expected = g * x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp(min=eps)
    torch.testing.assert_close(kernels.scale_norm(x, g, eps), expected)


@pytest.mark.parametrize("weight,bias", [(True, True), (True, False), (False, False)])
def test_dyt_gradcheck(weight, bias):
    x, a = _x(3, 5) * 2, _param(()) * 0.5
    w, b = (_param(5) if weight else None), (_param(5) if bias else None)
    assert torch.autograd.gradcheck(lambda x, a, *wb: kernels.dyt(x, a, w, b),
                                    (x, a) + tuple(t for t in (w, b) if t is not None))
    expected = torch.tanh(a * x) * (w if w is not None else 1) + (b if b is not None else 0)
    torch.testing.assert_close(kernels.dyt(x, a, w, b), expected)


@pytest.mark.parametrize("kind,fn", [("rmsnorm", "_RMSNormBackward"), ("preaffine_rmsnorm", "_RMSNormBackward"),
                                     ("scalenorm", "_ScaleNormBackward"), ("dyt", "_DyTBackward")])
def test_norms_take_the_cpu_kernel_and_agree_with_the_reference_form(kind, fn, monkeypatch):
    """float32 on the CPU takes the kernel; the same module on the written-out path (what CUDA and
    compile run) gives the same output and gradients to float32 rounding."""
    torch.manual_seed(0)
    norm = build_norm(NormConfig(kind=kind, bias=kind == "dyt"), 32, "attn_in")
    with torch.no_grad():
        for p in norm.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(4, 9 * 32, 32, requires_grad=True)   # > dyt's size threshold
    y = norm(x)
    assert type(y.grad_fn).__name__ == fn
    gy = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, *norm.parameters()], gy)
    monkeypatch.setattr(kernels, "ENABLED", False)
    y_ref = norm(x)
    grads_ref = torch.autograd.grad(y_ref, [x, *norm.parameters()], gy)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_kernels_are_skipped_where_torch_is_faster():
    assert kernels.use_cpu_kernels(torch.ones(2))
    assert not kernels.use_cpu_kernels(torch.ones(2), min_numel=3)
    small = build_norm(NormConfig(kind="dyt"), 8)(torch.randn(2, 8, requires_grad=True))
    assert type(small.grad_fn).__name__ != "_DyTBackward"                       # tiny: plain torch.tanh
    assert not kernels.use_cpu_kernels(torch.ones(2, dtype=torch.bfloat16))   # upcast path keeps fp32 stats


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rmsnorm", "scalenorm", "dyt", "preaffine_rmsnorm"])
def test_compiled_norm_matches_eager_kernel(kind):
    """Under torch.compile the norms take their written-out form (DyT: 2 sigmoid(2z) - 1 on the CPU);
    outputs and gradients agree with the eager kernels."""
    torch.manual_seed(0)
    norm = build_norm(NormConfig(kind=kind), 32, "attn_in")
    x = torch.randn(4, 300, 32, requires_grad=True)      # above dyt's size threshold: the eager kernel runs
    gy = torch.randn_like(x)
    eager = norm(x)
    g_eager = torch.autograd.grad(eager, [x, *norm.parameters()], gy)
    compiled = torch.compile(norm)(x)
    g_comp = torch.autograd.grad(compiled, [x, *norm.parameters()], gy)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_second_derivatives_raise_instead_of_being_wrong(monkeypatch):
    x, w = _x(2, 3, 4), _param(4)
    (g,) = torch.autograd.grad(kernels.rms_norm(x, w, 1e-6).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad|double backward"):
        g.sum().backward()
    monkeypatch.setattr(kernels, "ENABLED", False)   # the escape hatch: the written-out formula has second derivatives
    x2 = x.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(build_norm(NormConfig(kind="rmsnorm"), 4).double()(x2).pow(2).sum(), x2,
                               create_graph=True)
    g.sum().backward()
    assert torch.isfinite(x2.grad).all()
