"""The stacked engine's optimizers: Adam(W), SGD and Muon on the flat [E, P] buffer, one update for all members.

Each follows its torch counterpart's update (torch.optim.Adam/AdamW, torch.optim.SGD, training/muon.py's
MuonAdamW) with per-member hyper-parameters as [E, 1] columns, and keeps its state in torch's format by
parameter name (`state_of(k)`, `load(k, ...)`), so a checkpoint moves between a stack and a plain run.
A member that is not active (frozen after divergence, or past its own train.steps) changes neither its
weights nor its state: its lr is 0 and its moments are updated with weight 0.
"""
from __future__ import annotations

import torch

from .muon import lr_scale, newton_schulz
from .optim import decay_coefficient


def _column(values, device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)[:, None]


class StackedAdam:
    """Adam / AdamW with per-member lr, betas, eps and decoupled weight decay; `mask` [P] (1 = updated here)
    restricts it to part of the buffer (Muon's AdamW half)."""

    def __init__(self, flat, trains: list, device, mask: torch.Tensor | None = None):
        self.flat, self.mask = flat, mask
        self.b1, self.b2 = _column([t.betas[0] for t in trains], device), _column([t.betas[1] for t in trains], device)
        self.eps = _column([t.adam_eps for t in trains], device)
        self.wd = _column([decay_coefficient(t) for t in trains], device)   # weight_decay_mode as in the plain path
        self.m = torch.zeros_like(flat.data)
        self.v = torch.zeros_like(flat.data)
        self.t = torch.zeros(flat.E, 1, device=device)
        self.names = [n for n, s in flat.spans.items() if mask is None or bool(mask[s.offset])]

    def load(self, k: int, by_name: dict) -> None:
        for name, state in by_name.items():
            s = self.flat.spans[name]
            self.m[k, s.offset:s.offset + s.numel] = state["exp_avg"].reshape(-1)
            self.v[k, s.offset:s.offset + s.numel] = state["exp_avg_sq"].reshape(-1)
            self.t[k] = float(state["step"])

    def state_of(self, k: int) -> dict[str, dict[str, torch.Tensor]]:
        if float(self.t[k]) == 0:
            return {}
        step = torch.tensor(float(self.t[k]))
        return {name: {"step": step.clone(), "exp_avg": self.flat.member(self.m, k, name).clone(),
                       "exp_avg_sq": self.flat.member(self.v, k, name).clone()} for name in self.names}

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: torch.Tensor, active: torch.Tensor) -> None:
        """One update of every active member; lr and active are [E]."""
        p, lr, on = self.flat.data, (lr * active)[:, None], active[:, None]
        self.t += on
        decay = self.flat.decay_mask if self.mask is None else self.flat.decay_mask * self.mask
        p.mul_(1 - lr * self.wd * decay)       # AdamW: decoupled, matrices only
        self.m.lerp_(grad, (1 - self.b1) * on)
        self.v.mul_(torch.where(on > 0, self.b2, 1.0)).addcmul_(grad * ((1 - self.b2) * on), grad)
        t = self.t.clamp(min=1)
        bc1, bc2 = 1 - self.b1 ** t, 1 - self.b2 ** t
        denom = (self.v.sqrt() / bc2.sqrt()).add_(self.eps)
        step = self.m / denom * (lr / bc1)
        p.sub_(step if self.mask is None else step * self.mask)


class StackedSGD:
    """torch.optim.SGD (dampening 0) with per-member lr, momentum, Nesterov and L2 weight decay."""

    def __init__(self, flat, trains: list, device):
        self.flat = flat
        self.mu = _column([t.momentum for t in trains], device)
        self.nesterov = _column([float(t.nesterov) for t in trains], device) > 0
        self.wd = _column([decay_coefficient(t) for t in trains], device)
        self.buf = torch.zeros_like(flat.data)
        self.t = torch.zeros(flat.E, 1, device=device)

    def load(self, k: int, by_name: dict) -> None:
        for name, state in by_name.items():
            s = self.flat.spans[name]
            self.buf[k, s.offset:s.offset + s.numel] = state["momentum_buffer"].reshape(-1)
            self.t[k] = 1.0

    def state_of(self, k: int) -> dict[str, dict[str, torch.Tensor]]:
        if float(self.t[k]) == 0 or float(self.mu[k]) == 0:   # torch keeps no buffer without momentum
            return {}
        return {name: {"momentum_buffer": self.flat.member(self.buf, k, name).clone()} for name in self.flat.spans}

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: torch.Tensor, active: torch.Tensor) -> None:
        p, lr, on = self.flat.data, (lr * active)[:, None], active[:, None]
        self.t += on
        d = grad + (self.wd * self.flat.decay_mask) * p              # L2: torch's grad.add(p, alpha=wd)
        self.buf.mul_(torch.where(on > 0, self.mu, 1.0)).add_(d * on)   # the first step: 0 * mu + d = d
        update = torch.where(self.nesterov, d + self.mu * self.buf, self.buf)
        p.sub_(lr * update)


class StackedMuon:
    """MuonAdamW: Muon on the spans of the blocks' matrices (each orthogonalized for all members in one batched
    Newton-Schulz call), StackedAdam on the rest."""

    def __init__(self, flat, trains: list, device, muon_names: set[str]):
        self.flat, self.names = flat, [n for n in flat.spans if n in muon_names]
        mask = torch.ones(flat.P, device=device, dtype=flat.data.dtype)
        for n in self.names:
            s = flat.spans[n]
            mask[s.offset:s.offset + s.numel] = 0.0
        self.adam = StackedAdam(flat, trains, device, mask)
        self.mu = _column([t.muon_momentum for t in trains], device)
        self.keep = _column([1 - t.muon_momentum for t in trains], device)   # 1 - mu in double, as torch's scalar
        self.nesterov = _column([float(t.muon_nesterov) for t in trains], device) > 0
        self.wd = _column([decay_coefficient(t) for t in trains], device)
        self.ns_steps, self.adjust = trains[0].muon_ns_steps, trains[0].muon_lr_adjust   # equal in a stack
        self.buf = torch.zeros_like(flat.data)
        self.t = torch.zeros(flat.E, 1, device=device)

    def load(self, k: int, by_name: dict) -> None:
        self.adam.load(k, {n: s for n, s in by_name.items() if n not in self.names})
        for name in self.names:
            if name in by_name:
                s = self.flat.spans[name]
                self.buf[k, s.offset:s.offset + s.numel] = by_name[name]["momentum_buffer"].reshape(-1)
                self.t[k] = 1.0

    def state_of(self, k: int) -> dict[str, dict[str, torch.Tensor]]:
        state = self.adam.state_of(k)
        if float(self.t[k]):
            state.update({n: {"momentum_buffer": self.flat.member(self.buf, k, n).clone()} for n in self.names})
        return state

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: torch.Tensor, active: torch.Tensor) -> None:
        E, p, on = self.flat.E, self.flat.data, active[:, None]
        lr_e = (lr * active)[:, None]
        self.t += on
        self.buf.lerp_(grad, self.keep * on)
        for name in self.names:
            s = self.flat.spans[name]
            cols = slice(s.offset, s.offset + s.numel)
            g, buf = grad[:, cols], self.buf[:, cols]
            update = torch.where(self.nesterov, g.lerp(buf, self.mu), buf)
            ortho = newton_schulz(update.reshape(E, *s.shape), self.ns_steps).reshape(E, -1).to(p.dtype)
            p[:, cols].mul_(1 - lr_e * self.wd).sub_(ortho * (lr_e * lr_scale(s.shape, self.adjust)))
        self.adam.step(grad, lr, active)


def build_stacked_optimizer(flat, trains: list, device, plain_model):
    """The stacked counterpart of optim.build_optimizer for a stack (one optimizer family per stack)."""
    kind = trains[0].optimizer
    if kind == "sgd":
        return StackedSGD(flat, trains, device)
    if kind == "muon":
        from .muon import muon_params

        hidden = muon_params(plain_model)
        return StackedMuon(flat, trains, device, {n for n, p in plain_model.named_parameters() if id(p) in hidden})
    return StackedAdam(flat, trains, device)
