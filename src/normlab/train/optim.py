"""Optimizer with parameter groups, and the LR schedule as a pure function of the step.

Weight decay applies to matrices inside blocks and the head only: never to norm gains, biases,
embeddings or scalar gates (the usual GPT practice; decaying a gain pulls the norm toward zero).
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


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay if cfg.optimizer == "adamw" else 0.0)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    device = next(model.parameters()).device
    return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps, **optimizer_flags(cfg, device, cls))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over warmup_steps, then constant, linear decay to 0, or cosine to min_lr_frac."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    if cfg.schedule == "linear":
        return cfg.lr * (1.0 - frac)
    floor = cfg.min_lr_frac
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
