"""Per-token cross-entropy and log-sum-exp from bf16 logits, in float32, a block of rows at a time.

Under train.dtype=bfloat16 the head's logits come out in bf16 ([N, V], the largest tensor of a step at a real
vocabulary). The plain route, `F.cross_entropy(logits.float())`, makes a float32 copy, a float32 log-softmax, a
zero-filled float32 gradient and a cast back, each a full pass over memory: at V 8192, T 256, B 16 that was ~20 %
of an AMX-BF16 step, more than the head's matmul (benchmarks/RESULTS.md, "bf16"). Here each block of rows is cast,
reduced and differentiated while it sits in cache; nothing of size N x V is made in float32, and the gradient is
written once, in bf16. The arithmetic is float32 throughout, as in the plain route (the logits are the same bf16
values), so the loss agrees with it to float32 rounding (tested against float64). A target of IGNORE adds
nothing; a member with no target left has loss 0 (as a stack's member_losses has always had).
"""
from __future__ import annotations

import torch

from ..data import IGNORE

BLOCK_ELEMENTS = 1 << 20   # rows per block x V: 4 MiB of float32 (1 << 18 was as fast, 1 << 16 slower)


def _blocks(n: int, v: int):
    rows = max(1, BLOCK_ELEMENTS // max(v, 1))
    return ((i, min(i + rows, n)) for i in range(0, n, rows))


class _BlockwiseCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor):
        n, v = logits.shape
        keep = target != IGNORE
        safe = target.clamp(min=0)[:, None]
        lse = logits.new_empty(n, dtype=torch.float32)
        picked = logits.new_empty(n, dtype=torch.float32)
        for a, b in _blocks(n, v):
            block = logits[a:b].float()
            torch.logsumexp(block, -1, out=lse[a:b])
            picked[a:b] = block.gather(1, safe[a:b])[:, 0]
        ce = (lse - picked) * keep
        ctx.save_for_backward(logits, safe, keep, lse)
        return ce, lse

    @staticmethod
    def backward(ctx, grad_ce, grad_lse):
        logits, safe, keep, lse = ctx.saved_tensors
        n, v = logits.shape
        g_ce = grad_ce * keep if grad_ce is not None else torch.zeros_like(lse)
        g_all = g_ce + grad_lse if grad_lse is not None else g_ce   # d/dlogits of lse is the softmax
        out = torch.empty_like(logits)
        for a, b in _blocks(n, v):
            p = logits[a:b].float().sub_(lse[a:b, None]).exp_().mul_(g_all[a:b, None])
            p.scatter_add_(1, safe[a:b], -g_ce[a:b, None])
            out[a:b] = p
        return out, None


def bf16_token_losses(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy per row, 0 where the target is IGNORE; log-sum-exp per row), float32 [N], from bf16 logits
    [N, V] and targets [N]."""
    return _BlockwiseCrossEntropy.apply(logits, target)


def bf16_lm_losses(logits: torch.Tensor, targets: torch.Tensor, E: int, z_loss) -> torch.Tensor:
    """Each member's mean cross-entropy over its non-ignored targets (+ z_loss x its mean squared log-sum-exp), [E],
    from bf16 logits [..., V] whose rows are member-major (E = 1: a run alone); z_loss a float or [E]. The float32
    route stays in step.lm_loss / stacked.member_losses, so float32 runs are bit for bit what they were."""
    ce, lse = bf16_token_losses(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    keep = (targets.reshape(-1) != IGNORE).view(E, -1).float()
    count = keep.sum(1).clamp(min=1)
    loss = ce.view(E, -1).sum(1) / count
    if bool((z_loss != 0).any()) if torch.is_tensor(z_loss) else z_loss:
        loss = loss + z_loss * (lse.view(E, -1).square() * keep).sum(1) / count
    return loss
