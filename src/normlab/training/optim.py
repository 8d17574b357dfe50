"""Optimizer with parameter groups, its state keyed by parameter name, and the LR schedule.

Weight decay applies to matrices inside blocks and the head only: never to norm gains, biases,
embeddings or scalar gates (the usual GPT practice; decaying a gain pulls the norm toward zero).
Checkpoints store the optimizer state by parameter name (rundir/checkpoint.py), so the same file
restores a plain, DDP, FSDP or stacked run.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig
from .accel import optimizer_flags


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def decay_coefficient(cfg: TrainConfig) -> float:
    """The decay group's weight_decay. torch's AdamW (and Muon) decays p by lr_t * wd per step (coupled: a larger
    peak LR also decays harder). independent (Loshchilov & Hutter 2019 Alg. 2; Wortsman et al. 2023 sec. 3.2.2):
    p -= s_t * wd * p with s_t = lr_t / lr the schedule's multiplier, i.e. wd / lr in torch's terms (a constant,
    so fused AdamW needs no per-step change, and a schedule that reaches 0 stays finite). sgd: torch.optim.SGD's
    L2 term wd * p added to the gradient. adam: none."""
    if cfg.optimizer == "adam":
        return 0.0
    if cfg.optimizer == "sgd":
        return cfg.weight_decay
    return cfg.weight_decay / cfg.lr if cfg.weight_decay_mode == "independent" else cfg.weight_decay


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    from .nodynamo import skip_dynamo_wrappers

    skip_dynamo_wrappers()   # an eager process never imports torch._dynamo through the optimizer (nodynamo.py)
    groups = param_groups(model, decay_coefficient(cfg))
    device = next(model.parameters()).device
    if cfg.optimizer == "sgd":
        cls = torch.optim.SGD
        return cls(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                   **optimizer_flags(cfg, device, cls))
    if cfg.optimizer == "muon":
        from .muon import MuonAdamW, muon_params

        hidden = muon_params(model)
        split = [{"params": [p for p in groups[0]["params"] if id(p) in hidden], "weight_decay":
                  groups[0]["weight_decay"], "muon": True}]
        split += [{**g, "params": [p for p in g["params"] if id(p) not in hidden]} for g in groups]
        return MuonAdamW(split, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps, momentum=cfg.muon_momentum,
                         nesterov=cfg.muon_nesterov, ns_steps=cfg.muon_ns_steps, adjust=cfg.muon_lr_adjust,
                         adamw_flags=optimizer_flags(cfg, device, torch.optim.AdamW))
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps, **optimizer_flags(cfg, device, cls))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over warmup_steps, then constant, linear decay to 0, or cosine to min_lr_frac.
    Past train.steps the schedule holds its final value (a cosine does not rise into a second cycle)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    if cfg.schedule == "linear":
        return cfg.lr * (1.0 - frac)
    floor = cfg.min_lr_frac
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def optimizer_state_by_name(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict[str, torch.Tensor]]:
    """{parameter name: its state} for every parameter that has state (tied ones once): Adam's {step, exp_avg,
    exp_avg_sq}, SGD's and Muon's {momentum_buffer}."""
    return {name: dict(optimizer.state[p]) for name, p in model.named_parameters() if p in optimizer.state}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, by_name: dict, source: str) -> None:
    """Restore name-keyed state into `optimizer` (built for `model`), checking names, shapes and values."""
    from ..config import ConfigError

    params = dict(model.named_parameters())
    unknown = sorted(set(by_name) - set(params))
    if unknown:
        raise ConfigError(f"{source}: optimizer state for parameters this model does not have: {', '.join(unknown[:5])}")
    for name, state in by_name.items():
        for key, t in state.items():
            if key != "step" and tuple(t.shape) != tuple(params[name].shape):
                raise ConfigError(f"{source}: optimizer {key} of {name} has shape {tuple(t.shape)}, the parameter "
                                  f"{tuple(params[name].shape)}")
            if not t.is_floating_point():
                raise ConfigError(f"{source}: optimizer {key} of {name} is not a float tensor ({t.dtype})")
    index = {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    sd = optimizer.state_dict()
    sd["state"] = {index[id(params[name])]: dict(state) for name, state in by_name.items()}
    optimizer.load_state_dict(sd)
