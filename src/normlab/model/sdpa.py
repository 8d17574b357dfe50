"""F.scaled_dot_product_attention with one CPU rule: bf16 inputs are attended in float32.

On the CPU, SDPA's bf16 flash kernel is slower than its float32 one, mostly in the backward (measured on an
AMX-BF16 Xeon, forward + backward at B 16, D 32: 1.2x slower at H 8, T 256 and 4.4x at H 4, T 64;
benchmarks/RESULTS.md, "bf16"). Under train.dtype=bfloat16 the q, k, v that come out of the bf16 projections
are therefore cast up, attended in float32 and the output cast back: the step gets faster and the attention more
exact, not less. CPU autocast runs SDPA in bf16 whatever its inputs are, so the call sits outside it. CUDA keeps
bf16 (its flash kernel is the fast path there).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    """F.scaled_dot_product_attention(q, k, v, **kwargs), in float32 for bf16 inputs on the CPU."""
    if q.dtype != torch.bfloat16 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    mask = kwargs.get("attn_mask")
    if mask is not None and mask.is_floating_point():
        kwargs["attn_mask"] = mask.float()
    with torch.autocast("cpu", enabled=False):   # CPU autocast lists SDPA as a bf16 op: it would cast them back
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(q.dtype)
