"""sink_ablation: the loss increase when attention to position 0 is removed (rows renormalized).

Gu et al. 2024 and Guo et al. 2024 read a sink as a no-op the model relies on: forbid it and the heads must put
that mass somewhere that carries content. On the probe batch (View.x, View.y), each attention module's weights
(its own `probabilities`, so every variant is covered) get A[t, 0] = 0 for query rows t >= 1 and the rest of
each row rescaled to the row's old total (for softmax: divided by 1 - A[t, 0]); row 0 sees only position 0
and is left as it is. `layer<i>`: loss with layer i ablated minus the full loss (nats/token); `all`: every
layer at once; `loss`: the full loss. Only models whose attention is normlab's SelfAttention (the GPT).
"""
from __future__ import annotations

import torch

from ..model.attention import SelfAttention
from .base import Probe, register_probe
from .depth_stats import lm_loss


def without_first(probs: torch.Tensor) -> torch.Tensor:
    """A[..., t, 0] = 0 for rows t >= 1, each such row rescaled to its old sum (a row left with no mass stays 0)."""
    out = probs.clone()
    total = probs.sum(-1, keepdim=True)
    rest = total - probs[..., :1]
    scale = torch.where(rest > 1e-12, total / rest.clamp(min=1e-12), torch.zeros_like(rest))
    out[..., 1:, :] = probs[..., 1:, :] * scale[..., 1:, :]
    out[..., 1:, 0] = 0.0
    return out


def _ablated_attend(module: SelfAttention):
    def attend(q, k, v):
        probs, _ = module.probabilities(q, k)
        return without_first(probs).to(q.dtype) @ v
    return attend


def loss_with_ablation(model, modules: list[SelfAttention], x, y) -> float:
    """The loss with position 0 removed from the named attention modules (instance patch, always undone)."""
    try:
        for m in modules:
            m._attend = _ablated_attend(m)
        return lm_loss(model(x), y)
    finally:
        for m in modules:
            m.__dict__.pop("_attend", None)


@register_probe("sink_ablation")
class SinkAblation(Probe):
    """loss increase when attention to position 0 is removed and rows renormalized, per layer and all at once."""

    patterns = ()
    in_all = False   # L + 2 forwards of its own per probe pass: named by the experiments that need it

    def reduce(self, view):
        model, x, y = view.model, view.x, view.y
        blocks = getattr(model, "blocks", None)
        if x is None or y is None or blocks is None or y.shape != x.shape:
            return {}
        modules = [getattr(b, "attn", None) for b in blocks]
        if not modules or not all(isinstance(m, SelfAttention) for m in modules):
            return {}
        full = lm_loss(model(x), y)
        out = {"loss": full}
        for i, m in enumerate(modules):
            out[f"layer{i}"] = loss_with_ablation(model, [m], x, y) - full
        out["all"] = loss_with_ablation(model, modules, x, y) - full
        return out
