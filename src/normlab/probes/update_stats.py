"""update_stats: relative update size ||dtheta|| / ||theta|| and Adam's second moments, per layer.

Stage "update" (training/probing.py): every probes.update_every steps the parameters are copied after
backward (`snapshot`) and compared after the optimizer step (`measure`), so dtheta is the whole change
the step made (the Adam update, weight decay, and anything run after it: nGPT's renormalization,
QK-Clip). Per layer (the layer_of grouping of grad_norms): `ratio/<layer>` = sqrt(sum ||dp||^2) /
sqrt(sum ||p||^2) over the layer's parameters (`ratio/total` over the model); `v_mean/<layer>` and
`v_max/<layer>`: mean and max over the layer's elements of Adam's bias-corrected second moment
v_hat = exp_avg_sq / (1 - beta2^t) (t = the parameter's step count), the per-coordinate curvature
proxy whose square root divides the update. Cost: one copy of the parameters and a few foreach
reductions per measured step; values stay on the device (read with the step's record).
A probe pass outside training (probe_model) has no step to measure: its summary is empty. The v statistics
cover the parameters Adam(W) updates: under sgd they are NaN, under muon they cover the AdamW part (gains,
biases, embeddings, head); a layer with none is NaN.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import Figure, Probe, register_probe
from .recorder import layer_of


class UpdateTracker:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.params, self.optimizer = [p for _, p in named], optimizer
        # Adam-managed parameters only: SGD has no second moment, Muon's matrices none either (its gains do)
        self.beta2 = {id(p): g["betas"][1] for g in optimizer.param_groups if "betas" in g and not g.get("muon")
                      for p in g["params"]}
        layers = list(dict.fromkeys(layer_of(n) for n, _ in named))
        device = self.params[0].device if self.params else "cpu"
        member = torch.zeros(len(layers), len(named))
        for j, (n, _) in enumerate(named):
            member[layers.index(layer_of(n)), j] = 1
        self.member, self.layers = member.to(device), layers
        self.keys = ([f"ratio/{l}" for l in layers] + ["ratio/total"] + [f"v_mean/{l}" for l in layers]
                     + [f"v_max/{l}" for l in layers])
        self.before: list[torch.Tensor] | None = None

    def snapshot(self) -> None:
        self.before = [p.detach().clone() for p in self.params]

    def measure(self) -> torch.Tensor | None:
        """len(keys) values on the device, or None without a snapshot (or before Adam has any state)."""
        if self.before is None or not self.params:
            return None
        before, self.before = self.before, None
        deltas = torch._foreach_sub([p.detach() for p in self.params], before)
        d2 = torch.stack(torch._foreach_norm(deltas)).float().pow(2)
        p2 = torch.stack(torch._foreach_norm(before)).float().pow(2)
        ratio = (self.member @ d2).sqrt() / (self.member @ p2).sqrt()
        total = (d2.sum().sqrt() / p2.sum().sqrt()).view(1)
        sums, maxima, counted = [], [], []
        for p in self.params:
            state = self.optimizer.state.get(p, {})
            if id(p) not in self.beta2 or "exp_avg_sq" not in state:
                sums.append(ratio.new_zeros(())), maxima.append(ratio.new_full((), -math.inf))
                counted.append(0.0)
                continue
            v = state["exp_avg_sq"] / (1 - self.beta2[id(p)] ** state["step"].to(state["exp_avg_sq"].device))
            sums.append(v.sum().float().to(ratio.device)), maxima.append(v.max().float().to(ratio.device))
            counted.append(float(p.numel()))
        sums, maxima = torch.stack(sums), torch.stack(maxima)
        v_mean = (self.member @ sums) / (self.member @ torch.tensor(counted, device=ratio.device))  # 0/0: NaN
        v_max = torch.where(self.member > 0, maxima, -math.inf).amax(dim=1)
        v_max = torch.where(v_max > -math.inf, v_max, torch.full_like(v_max, math.nan))   # no Adam state: NaN
        return torch.cat([ratio, total, v_mean, v_max])


@register_probe("update_stats")
class UpdateStats(Probe):
    """||dtheta||/||theta|| per layer for one optimizer step, and mean/max of Adam's bias-corrected v per layer."""

    stage = "update"
    figures = (Figure("layers", "ratio", "probe_update_ratio.png", "Relative update ||dtheta|| / ||theta|| per layer",
                      "The size of one optimizer step relative to the weights, per layer, every probes.update_every "
                      "steps. Warmup and LR decay show up directly; a layer whose ratio stays far above the others "
                      "is where the step is too large.", log=True),
               Figure("layers", "v_mean", "probe_adam_v.png", "Adam second moment per layer (mean v_hat)",
                      "Mean bias-corrected exp_avg_sq per layer: the squared gradient scale Adam divides by.",
                      log=True))

    def tracker(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> UpdateTracker:
        return UpdateTracker(model, optimizer)

    def reduce(self, view):
        return {}
