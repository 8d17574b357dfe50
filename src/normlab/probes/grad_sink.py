"""grad_sink: per-position gradient norm ||dL/dh_t|| of the residual stream, the "gradient sink" (arXiv 2603.17771).

Under a causal mask every later token reads position 0, so the loss's gradient concentrates there once it is a
sink (arXiv 2603.17771: sinks are gradient sinks; RMSNorm's Jacobian, ~1/||h||, then shapes massive
activations). One forward and backward of its own on the probe batch (View.x, View.y), gradients taken with
torch.autograd.grad with respect to the residual stream only, so no parameter's .grad is touched. Where: the
embedding output (the first block's input, `embed`) and each block's output. Per place: `ratio/<place>` =
mean_b ||g[b,0]|| / median over (b, t >= 1) of ||g[b,t]||, and `profile/<place>` (npz: mean_b ||g[b,t]|| per t).
The loss is the mean cross-entropy over the targets, as in training.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data import IGNORE
from .base import Figure, Probe, register_probe


def gradient_ratio(g: torch.Tensor) -> tuple[float, np.ndarray]:
    """g: B,T,C -> (mean_b ||g_0|| / median_{b,t>=1} ||g_t||, per-position mean norm T)."""
    norms = g.detach().double().norm(dim=-1)
    profile = norms.mean(0).cpu().numpy()
    if norms.shape[1] < 2:
        return float("nan"), profile
    median = float(norms[:, 1:].flatten().median())
    return (float(norms[:, 0].mean()) / median if median > 0 else float("nan")), profile


@register_probe("grad_sink")
class GradSink(Probe):
    """||dL/dh_t|| per position at the embedding and each block: ratio at position 0 (gradient sink, 2603.17771)."""

    patterns = ()
    in_all = False   # a forward and backward of its own per probe pass: named by the experiments that need it
    figures = (Figure("layers", "ratio", "probe_grad_sink.png", "Gradient sink ||dL/dh_0|| / median ||dL/dh_t||",
                      "Per place (embedding output, each block's output), the loss gradient's norm at position 0 "
                      "over the median of the other positions', over training (arXiv 2603.17771).", log=True),)

    def reduce(self, view):
        model, x, y = view.model, view.x, view.y
        blocks = getattr(model, "blocks", None)
        if x is None or y is None or blocks is None or not len(blocks) or y.shape != x.shape:
            return {}
        kept: dict[str, torch.Tensor] = {}
        handles = [blocks[0].register_forward_pre_hook(lambda m, args: kept.__setitem__("embed", args[0]))]
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_hook(lambda m, args, out, i=i: kept.__setitem__(f"layer{i}", out)))
        try:
            with torch.enable_grad():
                logits = model(x)
                loss = F.cross_entropy(logits.float().flatten(0, -2), y.flatten(), ignore_index=IGNORE)
                places = [k for k, t in kept.items() if t.requires_grad]
                grads = torch.autograd.grad(loss, [kept[k] for k in places], allow_unused=True)
        finally:
            for h in handles:
                h.remove()
        out = {}
        for place, g in zip(places, grads):
            if g is None:
                continue
            ratio, profile = gradient_ratio(g)
            out[f"ratio/{place}"], out[f"profile/{place}"] = ratio, profile
        return out
