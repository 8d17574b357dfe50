"""The run directory: the only interface between training, reports and the Hub (file formats, locks).

    <run>/config.yaml meta.json tokenizer.json metrics.jsonl timing.jsonl summary.json samples.txt
          checkpoints/step_N/{model.safetensors, state.safetensors, state.json}  checkpoints/latest
          probes/step_N.npz  forensics.json forensics.npz forensics/last_good/   .lock
Nothing here unpickles: weights and optimizer state are safetensors, the rest JSON/YAML/npz
(loaded with allow_pickle=False), and every reader says which file is broken (ConfigError).
This layer sits just above `config`: training writes it, report and publish read it.
"""
from .files import (atomic_write_bytes, atomic_write_text, git_sha, meta, now, read_json, read_npz, read_text,
                    write_json, write_npz)
from .lock import RunLock
from .metrics import MetricsWriter, read_metrics
from .names import inside

__all__ = ["CheckpointError", "MetricsWriter", "RunLock", "atomic_write_bytes", "atomic_write_text", "git_sha",
           "inside", "latest_checkpoint", "load_state", "load_weights", "meta", "now", "read_json", "read_metrics",
           "read_npz", "read_state", "read_text", "save_checkpoint", "save_state", "write_json", "write_npz"]


_CHECKPOINT = ("CheckpointError", "latest_checkpoint", "load_state", "load_weights", "read_state", "save_checkpoint",
               "save_state")


def __getattr__(name: str):
    """Checkpoint names on first use: checkpoint.py imports torch, which reading a run's files (a report) does not
    need (seconds of a re-report)."""
    if name in _CHECKPOINT:
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
