"""Muon for the blocks' matrices, AdamW for everything else, as one torch optimizer.

Muon (Keller Jordan 2024; torch.optim.Muon since torch 2.9): momentum, then the update matrix is
orthogonalized by a quintic Newton-Schulz iteration (run in bfloat16, as the reference does) and
applied with a shape-dependent LR. It is meant for hidden 2-D weights only: the reference recipes
(modded-nanogpt, Moonlight) give embeddings, the output head, gains and biases to AdamW, and so
does `muon_params`. `newton_schulz` takes [..., out, in], so the stacked engine orthogonalizes the
same matrix of every member in one batched call (training/stacked_optim.py).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .nodynamo import optimizer_step

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # torch.optim.Muon's (and Keller Jordan's) quintic
NS_EPS = 1e-7


def newton_schulz(update: torch.Tensor, steps: int) -> torch.Tensor:
    """The orthogonalized update of [..., out, in] matrices (bfloat16), torch.optim.Muon's iteration:
    X = G / ||G||_F (per matrix), then `steps` times X <- aX + (bA + cA^2)X with A = X X^T, on the wide side."""
    a, b, c = NS_COEFFICIENTS
    x = update.bfloat16()
    tall = update.shape[-2] > update.shape[-1]
    if tall:
        x = x.transpose(-2, -1)
    lead = x.shape[:-2]
    x = x.reshape(-1, *x.shape[-2:])                                         # N, rows, cols (N = 1 for a matrix)
    x = x / torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp(min=NS_EPS)
    # addmm / baddbmm as torch.optim.Muon writes it (b A + c A A, then a X + (...) X): the same roundings
    for _ in range(steps):
        gram = torch.bmm(x, x.transpose(-2, -1))
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    x = x.reshape(*lead, *x.shape[-2:])
    return x.transpose(-2, -1) if tall else x


def lr_scale(shape: tuple, adjust: str) -> float:
    """The factor on train.lr for a matrix of this [out, in] shape (torch.optim.Muon's adjust_lr_fn)."""
    out, inp = shape[0], shape[1]
    return 0.2 * math.sqrt(max(out, inp)) if adjust == "match_rms_adamw" else math.sqrt(max(1.0, out / inp))


def muon_params(model: nn.Module) -> set[int]:
    """ids of the parameters Muon updates: weights of the nn.Linear layers inside the model, except the output
    head (`lm_head`) and any weight that is also an embedding table (tied)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {id(m.weight) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not name.endswith("lm_head") and id(m.weight) not in embeddings
            and m.weight.requires_grad}


class MuonAdamW(torch.optim.Optimizer):
    """Param groups flagged `muon: True` get Muon (state: momentum_buffer), the others torch's AdamW (state: step,
    exp_avg, exp_avg_sq) through an inner torch.optim.AdamW that shares this optimizer's groups and state, so
    param_groups, state, state_dict and load_state_dict cover both and checkpoints stay keyed by name."""

    def __init__(self, groups: list[dict], lr: float, betas: tuple, eps: float, momentum: float, nesterov: bool,
                 ns_steps: int, adjust: str, adamw_flags: dict):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=0.0, momentum=momentum, nesterov=nesterov,
                        ns_steps=ns_steps, adjust=adjust, muon=False)
        super().__init__(groups, defaults)
        adam_groups = [g for g in self.param_groups if not g["muon"]]
        self.adamw = torch.optim.AdamW(adam_groups, lr=lr, betas=betas, eps=eps, **adamw_flags)
        self._link()

    def _link(self) -> None:
        # the inner AdamW works on this optimizer's own group dicts and state (keyed by parameter: no clash)
        self.adamw.param_groups = [g for g in self.param_groups if not g["muon"]]
        self.adamw.state = self.state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)   # rebuilds param_groups and state: point the inner AdamW at them again
        self._link()

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if group["muon"]:
                self._muon_group(group)
        optimizer_step(self.adamw)   # nodynamo.py: no torch._dynamo import for an eager run

    def _muon_group(self, group: dict) -> None:
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        for p in group["params"]:
            if p.grad is None:
                continue
            buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
            buf.lerp_(p.grad, 1 - mu)
            update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
            p.mul_(1 - lr * wd)
            p.add_(newton_schulz(update, group["ns_steps"]).to(p.dtype), alpha=-lr * lr_scale(p.shape, group["adjust"]))
