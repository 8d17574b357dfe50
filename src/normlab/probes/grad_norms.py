"""grad_norms: gradient L2 norm per layer and per parameter group (attn, mlp, norm, embed, head).

Read from .grad after backward and before clipping. `GradNormTracker.measure()` returns one device
tensor (a single matrix product over the per-parameter norms, no host sync), so the training loop
can buffer it every step and read it with the losses at log steps.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from .base import Figure, Probe, register_probe
from .recorder import layer_of


def group_of(name: str) -> str:
    """The kind of a parameter by where it sits: attn, mlp, norm, embed, head or other."""
    inner = re.sub(r"^.*?blocks\.\d+\.", "", name)
    first = inner.split(".")[0]
    if first.startswith("norm") or ".norm_" in inner:
        return "norm"
    if first in ("attn", "mlp"):
        return first
    if first in ("wte", "wpe") or "embed" in first:
        return "embed"
    return "head" if first == "lm_head" else "other"


class GradNormTracker:
    """Per-layer and per-group gradient norms of a model as one tensor; `keys` names its entries."""

    def __init__(self, model: nn.Module, prefix: str = ""):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        layers = list(dict.fromkeys(layer_of(n) for n, _ in named))
        groups = list(dict.fromkeys(group_of(n) for n, _ in named))
        self.keys = layers + [f"group/{g}" for g in groups] + ["total"]
        member = torch.zeros(len(self.keys), len(named), dtype=torch.float32)
        for j, (n, _) in enumerate(named):
            member[self.keys.index(layer_of(n)), j] = 1
            member[self.keys.index(f"group/{group_of(n)}"), j] = 1
        member[-1] = 1
        self.names = list(self.keys)
        self.keys = [prefix + k for k in self.keys]
        device = self.params[0].device if self.params else "cpu"
        self.member = member.to(device)

    def measure(self) -> torch.Tensor | None:
        """sqrt(sum of squared grad norms) per key; None when no parameter has a gradient."""
        grads = [p.grad for p in self.params]
        if all(g is None for g in grads):
            return None
        zero = torch.zeros(1, device=self.member.device)
        # one fused kernel for all parameters (what clip_grad_norm_ itself uses): ~4x cheaper per step
        norms = torch.stack(torch._foreach_norm([g.detach() if g is not None else zero for g in grads]))
        return (self.member @ norms.float().pow(2)).sqrt()

    def as_dict(self, values: torch.Tensor) -> dict[str, float]:
        return dict(zip(self.names, values.tolist()))


@register_probe("grad_norms")
class GradNorms(Probe):
    """||grad|| per layer and per parameter group (attn/mlp/norm/embed/head) and in total, before clipping."""

    stage = "gradients"
    figures = (Figure("layers", "", "probe_grad_norms.png", "Gradient norm per layer (before clipping)",
                      "||grad|| per layer every probes.grad_every steps. Post-Norm's gradients grow toward the "
                      "output at init (Xiong et al. 2020); spikes here precede loss spikes.", log=True),)

    def tracker(self, model: nn.Module) -> GradNormTracker:
        return GradNormTracker(model, prefix=f"probe/{self.name}/")

    def reduce(self, view):
        tracker = GradNormTracker(view.model)
        values = tracker.measure()
        return {} if values is None else tracker.as_dict(values)
