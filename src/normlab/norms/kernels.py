"""Fast eager forms of the norms' arithmetic for the CPU: same math, fewer passes over memory.

Why this exists (measured on a 2-core AVX-512 CPU, torch 2.13, x 16x256x256 fp32, fwd+bwd;
`benchmarks/norm_kernels.py`): F.layer_norm has a hand-written fused kernel both ways, while on
the CPU F.rms_norm runs as a composite of 4-6 elementwise ops whose autograd backward adds as
many again (4-10x F.layer_norm), and torch.tanh is not vectorized (about 20x a multiply, so DyT
paid ~3x F.layer_norm for one tanh). A norm comparison timed that way measures kernels, not
schemes. On CUDA recent torch has fused rms_norm kernels and a fast tanh, so these forms are
used on the CPU only (`use_cpu_kernels`), and never under torch.compile, whose generated kernel
of the written-out formula is better still.

- `rms_norm`: forward = one fused reduction (vector_norm) + two scaling passes; backward =
  ATen's fused LayerNorm backward run with mean 0 and RMSNorm's rstd, which gives
  rstd * (gw - mean(gw) - xhat * mean(gw * xhat)) and the weight gradient sum(gy * xhat) in one
  kernel; RMSNorm's gradient lacks the "- mean(gw)" term (no mean was subtracted), so it is added
  back: + rstd * mean(gy * w) (a matrix-vector product and one broadcast add).
- `scale_norm`: the per-row factor r = 1/max(||x||, eps) is formed on the (rows, 1) tensor, so the
  forward is one reduction and one multiply; the backward is one row-dot, one fused multiply-add.
- `dyt`: tanh(a x) = 2 sigmoid(2 a x) - 1 (torch.sigmoid is vectorized), so the forward is a
  sigmoid and one fused multiply-add and the backward uses ATen's fused sigmoid_backward. The
  error of 2 s - 1 is absolute, about 1 ulp of 1 (6e-8), not relative to tanh's value.

The backwards are first-order only (`once_differentiable`): code that needs second derivatives
(gradient penalties, Hessian-vector products) gets an error, and can set
`normlab.norms.kernels.ENABLED = False` to run the written-out formulas instead.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


ENABLED = True  # False: every norm runs its written-out autograd formula (e.g. for double backward)
# RMSNorm takes rms_norm from this many elements of x on (a stack's [E, 1, C] gains: the unweighted kernel, then
# the gains); below it F.rms_norm's or the formula's few tiny ops cost less than the kernel's Python (at 256
# elements 105-110 vs 146 us forward + backward; even at 32k; 3x faster at 1M: benchmarks/stacked_norms.py, RESULTS.md)
RMS_KERNEL_MIN_NUMEL = 32_768


def use_cpu_kernels(x: torch.Tensor, *params: torch.Tensor | None, min_numel: int = 0) -> bool:
    """True where these forms beat torch's own: eager, CPU, float32/float64, at least `min_numel`
    elements (below it a kernel's extra Python and tiny ops can cost more than they save), and plain
    parameters (per channel or scalar: a stacked run's [E, 1, C] parameters take the formula)."""
    return (ENABLED and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and x.numel() >= min_numel and not torch.compiler.is_compiling() and plain(*params))


def plain(*params: torch.Tensor | None) -> bool:
    """No parameter carries a member axis (stacked training, training/stacked.py): each is None, 0-d or 1-d."""
    return all(p is None or p.dim() <= 1 for p in params)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        d = x.shape[-1]
        rstd = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(d).add_(eps).rsqrt_()
        y = x * rstd
        if weight is not None:
            y.mul_(weight)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    @once_differentiable  # rstd etc. are saved without a graph: a double backward would treat them as
    def backward(ctx, gy):  # constants and be silently wrong, so it raises instead
        x, weight, rstd = ctx.saved_tensors
        d = x.shape[-1]
        need_w = weight is not None and ctx.needs_input_grad[1]
        gy = gy.contiguous()
        gx, gw, _ = torch.ops.aten.native_layer_norm_backward(
            gy, x, [d], torch.zeros_like(rstd), rstd, weight, None, [True, need_w, False])
        row_mean = (gy @ weight) if weight is not None else gy.sum(-1)   # sum(gy * w) per row
        gx.add_(row_mean.unsqueeze_(-1).mul_(rstd).div_(d))
        return gx, gw, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """weight * x / sqrt(mean(x^2, -1) + eps), statistics in x's dtype (float32 or float64)."""
    return _RMSNorm.apply(x.contiguous(), weight, eps)


def _colsum(t: torch.Tensor) -> torch.Tensor:
    """Sum over every dim but the last (a per-channel parameter's gradient)."""
    return t.reshape(-1, t.shape[-1]).sum(0)


class _ScaleNorm(torch.autograd.Function):
    # y = g * x * r, r = 1 / max(||x||, eps) per row. For rows with ||x|| > eps the Jacobian of
    # x / ||x|| is r (I - xhat xhat^T), so gx = g r (gy - xhat (gy . xhat)); clamped rows have r
    # constant, gx = g r gy. gg = sum over rows of (gy . x) r.
    @staticmethod
    def forward(ctx, x, scale, eps):
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        r = norm.clamp(min=eps).reciprocal_()
        ctx.save_for_backward(x, scale, r, norm > eps)
        return x * (r * scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, scale, r, unclamped = ctx.saved_tensors
        dots = torch.linalg.vecdot(gy, x, dim=-1).unsqueeze_(-1)      # gy . x per row
        gscale = (dots * r).sum().reshape(scale.shape) if ctx.needs_input_grad[1] else None
        coef = (dots * r * r).mul_(unclamped).neg_()                     # -(gy . xhat) r
        gx = torch.addcmul(gy, x, coef).mul_(r * scale)
        return gx, gscale, None


def scale_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """scale * x / max(||x||_2, eps) with a scalar (0-dim) `scale`."""
    return _ScaleNorm.apply(x, scale, eps)


class _DyT(torch.autograd.Function):
    # tanh(a x) = 2 s - 1 with s = sigmoid(2 a x), so y = w tanh(a x) + b = 2w s + (b - w): one
    # sigmoid and one fused multiply-add. d tanh(a x)/dx = 2a * 2 s (1 - s), which ATen's
    # sigmoid_backward(g, s) = g s (1 - s) gives in one pass.
    @staticmethod
    def forward(ctx, x, alpha, weight, bias):
        s = torch.sigmoid_(x * (2 * alpha))  # in place: one buffer fewer (measured 3.06x -> 2.46x F.layer_norm with the below)
        y = torch.addcmul(bias - weight, s, 2 * weight)
        ctx.save_for_backward(x, alpha, weight, s)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, alpha, weight, s = ctx.saved_tensors
        h = gy * (4 * weight)
        torch.ops.aten.sigmoid_backward.grad_input(h, s, grad_input=h)  # in place: h = d loss / d(a x)
        galpha = torch.dot(h.view(-1), x.reshape(-1)).reshape(alpha.shape) if ctx.needs_input_grad[1] else None
        gsum = _colsum(gy) if ctx.needs_input_grad[2] or ctx.needs_input_grad[3] else None
        gweight = 2 * _colsum(gy * s) - gsum if ctx.needs_input_grad[2] else None
        return h.mul_(alpha), galpha, gweight, gsum if ctx.needs_input_grad[3] else None


def dyt(x: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None):
    """weight * tanh(alpha * x) + bias with a scalar `alpha`; a missing weight is 1, a missing bias 0."""
    d = x.shape[-1]
    weight = weight if weight is not None else x.new_ones(d)
    bias = bias if bias is not None else x.new_zeros(d)
    return _DyT.apply(x, alpha, weight, bias)
