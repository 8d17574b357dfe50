"""Atomic checkpoints: checkpoints/step_NNNNNN/{model.safetensors, state.pt} and a `latest` pointer.

The step directory is written under a temporary name and renamed into place, then `latest` is
replaced atomically: a crash at any point leaves the previous checkpoint intact and pointed to.
state.pt holds the optimizer state, the step and the RNG states (data order needs no state: each
batch is a function of (seed, step)).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from .rundir import atomic_write_text


def save_state(folder: Path, model, optimizer, step: int) -> Path:
    """model.safetensors + state.pt written into a temporary folder that is then renamed to `folder`."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp_{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save({"step": step, "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state()}, tmp / "state.pt")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def save_checkpoint(run_dir: Path, model, optimizer, step: int, keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    final = save_state(root / f"step_{step:06d}", model, optimizer, step)
    atomic_write_text(root / "latest", final.name + "\n")
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "model.safetensors").exists() else None


def load_weights(model, ckpt: Path) -> None:
    load_model(model, str(Path(ckpt) / "model.safetensors"))


def load_checkpoint(ckpt: Path, model, optimizer) -> int:
    """Restore weights, optimizer and RNG; return the step to continue from."""
    load_weights(model, ckpt)
    state = torch.load(Path(ckpt) / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])
