"""What the one loop (loop.run_steps) and the callbacks need from an engine, written down as Protocols.

Two engines implement them: loop.PlainEngine (one model through step.train_step, whose `run.trainer` is a
step.Trainer) and stacked_loop.Engine (E members of one shape, each member's `run.trainer` a
stacked_loop.MemberTrainer). Nothing outside an engine asks which one runs; tests/unit/training/
test_engine_parity.py checks that both record the same keys, and test_engine_protocol.py that both satisfy
these Protocols.
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch
from torch import nn

from ..config import TrainConfig
from .dist import DistInfo
from .step import StepResult


@runtime_checkable
class StepEngine(Protocol):
    def step(self, step: int, live: list[int], after_backward: Callable[[], None]) -> dict[int, tuple[StepResult, int]]:
        """One optimizer step of the members in `live` (indices into the engine's members) at schedule position
        `step`; calls after_backward once, between backward and the update; gives each live member's result and
        the number of tokens it trained on, keyed by its index."""
        ...


@runtime_checkable
class RunTrainer(Protocol):
    """A member's `run.trainer`: what evaluation, probes, checkpoints and snapshots read. `model` and `optimizer`
    are a plain nn.Module and torch optimizer holding this member's current state."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    train: TrainConfig
    ranks: DistInfo

    def gradient_tracker(self, probe):
        """The tracker that gives a gradients-kind probe this member's gradient statistics after backward."""
        ...

    def update_tracker(self, probe):
        """The tracker that gives an update-kind probe this member's parameter update and optimizer state."""
        ...
