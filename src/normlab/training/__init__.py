"""Training layer: setup, one step, the loop with its callbacks, DDP/FSDP2, forensics.

    setup.py    run directory checks, data, model, optimizer, resume point -> TrainingRun
    step.py     one optimizer step (forward, loss, backward, clip, update)
    loop.py     train(cfg): the steps and the callbacks around them, then summary.json
    callbacks.py / probing.py / forensics.py   log flush, evaluation, checkpoints, probes, forensics
"""
from .evaluation import evaluate, generate_samples
from .loop import train
from .optim import build_optimizer, lr_at
from .setup import resolve_device, saved_config
from .step import Trainer, lm_loss, train_step

__all__ = ["Trainer", "build_optimizer", "evaluate", "generate_samples", "lm_loss", "lr_at", "resolve_device",
           "saved_config", "train", "train_step"]
