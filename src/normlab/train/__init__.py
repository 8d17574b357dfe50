"""Train layer: the loop, optimizer and schedules, checkpoints, the run-directory files."""
from .checkpoint import latest_checkpoint, load_checkpoint, load_weights, save_checkpoint
from .loop import evaluate, generate_samples, lm_loss, train
from .optim import build_optimizer, lr_at
from .rundir import read_json, read_metrics, write_json

__all__ = ["build_optimizer", "evaluate", "generate_samples", "latest_checkpoint", "lm_loss", "load_checkpoint",
           "load_weights", "lr_at", "read_json", "read_metrics", "save_checkpoint", "train", "write_json"]
