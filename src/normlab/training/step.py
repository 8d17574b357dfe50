"""One optimizer step: forward, loss, backward, clip, update. The loop, divergence replay
(training/forensics.py) and the benchmarks all call `train_step`, so a replay is the same math.

`Trainer` holds what a step needs: the plain model (evaluation, probes and checkpoints use it),
the module the forward goes through (itself, or its DDP / compiled view sharing its weights), the
optimizer, the parameters listed once (walking the module tree costs ~3 ms a step at tiny sizes),
the device and the rank layout. The step returns device tensors: no host sync.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..data import IGNORE
from . import accel, dist
from .nodynamo import optimizer_step
from .optim import lr_at, set_lr
from .qk_clip import QKClip
from .token_loss import bf16_lm_losses


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0) -> torch.Tensor:
    """Mean next-token cross-entropy over non-ignored targets (+ z-loss, PaLM / OLMo form)."""
    if logits.dtype == torch.bfloat16:   # blockwise in float32, no float32 copy of the logits (token_loss.py)
        return bf16_lm_losses(logits, targets, 1, z_loss)[0]
    flat = logits.float().view(-1, logits.shape[-1])
    loss = F.cross_entropy(flat, targets.view(-1), ignore_index=IGNORE)
    if z_loss:
        keep = targets.view(-1) != IGNORE
        loss = loss + z_loss * torch.logsumexp(flat[keep], dim=-1).pow(2).mean()
    return loss


def model_logits(model, batch, device) -> torch.Tensor:
    """Logits for a batch; a seq2seq batch also hands the model its source sequence."""
    if batch.src is None:
        return model(batch.x.to(device))
    return model(batch.x.to(device), src=batch.src.to(device))


@dataclass
class Trainer:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    train: TrainConfig
    step_model: nn.Module | None = None            # what the forward calls; default: model
    ranks: dist.DistInfo = field(default_factory=dist.DistInfo)
    params: list = field(default_factory=list)
    qk_clip: QKClip | None = None                   # train.qk_clip > 0: the attention modules keep their max logits

    def __post_init__(self):
        self.step_model = self.model if self.step_model is None else self.step_model
        self.params = self.params or list(self.model.parameters())
        if self.train.qk_clip and self.qk_clip is None:
            self.qk_clip = QKClip(self.model, self.train.qk_clip)

    # What the probes callback measures through: an engine owns gradient norms and update snapshots (the stacked
    # engine's MemberTrainer answers these for one member of a stack).
    def gradient_tracker(self, probe):
        return probe.tracker(self.model)

    def update_tracker(self, probe):
        return probe.tracker(self.model, self.optimizer)


@dataclass
class StepResult:
    loss: torch.Tensor        # 0-d, detached (rank-weighted under torchrun: mean over ranks is the loss)
    grad_norm: torch.Tensor   # 0-d, before clipping
    lr: float


def train_step(tr: Trainer, batch, step: int, after_backward: Callable[[], None] | None = None) -> StepResult:
    """One optimizer step on `batch` at schedule position `step`."""
    t = tr.train
    lr = lr_at(step, t)
    set_lr(tr.optimizer, lr)
    y = batch.y.to(tr.device, non_blocking=True)
    with accel.autocast(tr.device, t):
        logits = model_logits(tr.step_model, batch, tr.device)
    loss = dist.weighted(lm_loss(logits, y, t.z_loss), y, tr.ranks)  # DDP's average = grad of the global mean
    tr.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:  # probes read .grad here, before clipping rescales it
        after_backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(tr.params, t.grad_clip or float("inf"))
    grad_norm = dist.plain_tensor(grad_norm)  # FSDP returns a DTensor
    optimizer_step(tr.optimizer)   # not .step(): that imports torch._dynamo (nodynamo.py)
    post_step = getattr(tr.model, "post_step", None)
    if post_step is not None:  # e.g. nGPT renormalizes its matrices after every step
        post_step()
    if tr.qk_clip is not None:  # Kimi K2's QK-Clip, from the max logits this step's forward produced
        tr.qk_clip.apply()
    return StepResult(loss.detach(), grad_norm.detach(), lr)


def divergence_reason(loss: float, bound: float) -> str:
    """Why a training loss counts as diverged ("" when it does not)."""
    if loss != loss or loss in (float("inf"), float("-inf")):
        return f"non-finite loss {loss}"
    if bound and loss > bound:
        return f"loss {loss:.3g} > train.loss_bound={bound}"
    return ""
