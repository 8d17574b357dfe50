"""depth_stats: what each block does to the residual stream, and what the model loses without it.

The Curse of Depth (Sun et al. 2025, arXiv 2502.05795) and Peri-LN (Kim et al. 2025, arXiv 2502.02732):
in Pre-LN the residual stream's variance grows with depth, so a deep block's update is small beside
the stream it is added to and the block is close to the identity. Per block l, on the probe batch:
- `var/<layer>`: variance of the block's output (all elements), the residual stream after block l;
- `angle/<layer>`: angular distance arccos(cos(h_in, h_out)) / pi between the block's input and output,
  mean over target positions (Gromov et al. 2024's measure with n = 1, as in LayerNorm-Scaling's
  utils/angular_analysis.py): 0 = the block leaves every token's direction unchanged;
- `skip/<layer>`: the probe batch's loss with the block replaced by the identity minus the full loss
  (the paper's "performance drop" after removing a layer, here in nats/token, no retraining).
Runs its own forwards (one with hooks on every block, one per skipped block), so it needs the batch
(View.x, View.y) and a model with `blocks`; otherwise it returns nothing. Those L + 1 forwards per probe
pass made it the costliest probe (about half of a prepost stack's probing), so it is not in
`probes.names=[all]`: name it (experiments/depth does).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..data import IGNORE
from .base import Probe, register_probe
from .recorder import labels_array


def angular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """arccos(cos(a, b)) / pi per row of two (N, C) tensors, in [0, 1]."""
    cos = F.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12).clamp(-1.0, 1.0)
    return torch.arccos(cos) / math.pi


def lm_loss(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy over the targets that are not IGNORE (nats/token)."""
    return float(F.cross_entropy(logits.double().flatten(0, -2), y.flatten(), ignore_index=IGNORE))


@register_probe("depth_stats")
class DepthStats(Probe):
    """per block: residual variance, angular distance input->output, loss increase when skipped (Sun et al. 2025)."""

    patterns = ()
    in_all = False   # L + 1 forwards of its own per probe pass: named by the experiments that need it
    figures = ()  # per-layer profiles at several depths do not fit the generic per-variant panels: the
    # depth experiment draws them (experiments/depth/figures.py)

    def reduce(self, view):
        model, x, y = view.model, view.x, view.y
        blocks = getattr(model, "blocks", None)
        if x is None or blocks is None or not len(blocks):
            return {}
        keep = (y != IGNORE).reshape(-1) if y is not None and y.shape == x.shape else None
        inputs, outputs = {}, {}
        handles = []
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0])))
            handles.append(block.register_forward_hook(lambda m, args, out, i=i: outputs.__setitem__(i, out)))
        try:
            logits = model(x)
        finally:
            for h in handles:
                h.remove()
        out, var, angle, labels = {}, [], [], []
        for i in range(len(blocks)):
            h_in, h_out = inputs[i].reshape(-1, inputs[i].shape[-1]), outputs[i].reshape(-1, outputs[i].shape[-1])
            if keep is not None:
                h_in, h_out = h_in[keep], h_out[keep]
            label = f"layer{i}"
            var.append(float(h_out.double().var()))
            angle.append(float(angular_distance(h_in, h_out).mean()))
            out[f"var/{label}"], out[f"angle/{label}"] = var[-1], angle[-1]
            labels.append(label)
        out["embed_var"] = float(inputs[0].double().var())
        out["var"], out["angle"], out["labels"] = np.array(var), np.array(angle), labels_array(labels)
        if y is not None and y.shape == x.shape:
            out.update(self._skip_costs(model, blocks, x, y, lm_loss(logits, y)))
        return out

    @staticmethod
    def _skip_costs(model, blocks, x, y, full: float) -> dict:
        out, costs = {"loss": full}, []
        for i, block in enumerate(blocks):
            handle = block.register_forward_hook(lambda m, args, result: args[0])  # the block becomes the identity
            try:
                costs.append(lm_loss(model(x), y) - full)
            finally:
                handle.remove()
            out[f"skip/layer{i}"] = costs[-1]
        out["skip"] = np.array(costs)
        return out
