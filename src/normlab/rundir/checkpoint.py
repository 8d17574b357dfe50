"""Checkpoints without pickle: checkpoints/step_NNNNNN/{model.safetensors, state.safetensors, state.json}.

- model.safetensors: the plain model's weights (safetensors.torch.save_model: tied weights once).
- state.safetensors: optimizer state keyed by parameter *name* (`optimizer/<param>/<key>`, e.g.
  `optimizer/blocks.0.attn.qkv.weight/exp_avg`) and the torch RNG state (`rng/torch`). Keying by
  name, not by position, lets a checkpoint move between one process, DDP, FSDP and stacked
  training, whose optimizers order (or shape) their parameters differently.
- state.json: format, step, how many lines metrics.jsonl / timing.jsonl had (a resume truncates
  them to exactly that), and the parameter names that have optimizer state.
A step folder is written under a temporary name and renamed into place, then `latest` is replaced
atomically: a crash at any point leaves the previous checkpoint intact and pointed to. Every reader
validates what it reads and names the broken file; nothing is ever unpickled (normlab 0.1's
state.pt is refused, not loaded). A resume also cross-checks what a hand edit could make disagree:
state.json's step against its folder, weights in the model's own dtype and finite, finite moments,
non-negative Adam steps, optimizer state for every trainable parameter, a torch-sized RNG state.
A write that fails (a full disk) removes its temporary folder and raises WriteError naming it.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError
from .files import WriteError, atomic_write_text, read_json, read_text, write_error, write_json

FORMAT = 1
FILES = ("model.safetensors", "state.safetensors", "state.json")
_STEP_DIR = re.compile(r"^step_\d{6,}$")
_OPT_KEYS = {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"}   # Adam(W); SGD, Muon


class CheckpointError(ConfigError):
    """A checkpoint that is missing, partial, corrupt, from an unsafe format or for another model."""


def _safetensors_error(path: Path, err: Exception) -> CheckpointError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:240]
    return CheckpointError(f"{path}: cannot be loaded ({type(err).__name__}: {first})")


def save_state(folder: Path, model: nn.Module, optimizer_state: dict[str, dict[str, torch.Tensor]], info: dict,
               rng: torch.Tensor | None = None) -> Path:
    """Write the three files into a temporary folder, then rename it to `folder`."""
    from safetensors.torch import save_file, save_model

    folder = Path(folder)
    tmp = folder.parent / f".tmp_{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tensors = {f"optimizer/{name}/{key}": t.detach().contiguous().cpu()
               for name, state in optimizer_state.items() for key, t in state.items()}
    if rng is not None:
        tensors["rng/torch"] = rng.contiguous()
    try:
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        save_file(tensors, str(tmp / "state.safetensors"))
        write_json(tmp / "state.json", {"format": FORMAT, **info, "optimizer_params": sorted(optimizer_state)})
    except Exception as err:   # OSError, SafetensorError (a full disk in its own words), WriteError
        shutil.rmtree(tmp, ignore_errors=True)   # the space it took; the previous checkpoint is untouched
        raise (err if isinstance(err, WriteError) else write_error(tmp, err)) from None
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def kept(run_dir: Path) -> str:
    """What a run that stopped on a failed write keeps, for its error line."""
    try:
        ckpt = latest_checkpoint(run_dir)
    except ConfigError:
        ckpt = None
    if ckpt is None:
        return f"{run_dir} has no checkpoint yet, so it starts again at step 0"
    return (f"{run_dir} keeps its checkpoint at step {int(ckpt.name[5:])} and the records up to it; free some space, "
            "then continue it with --resume (a sweep: run it again)")


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer_state: dict, info: dict, rng=None,
                    keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    final = save_state(root / f"step_{info['step']:06d}", model, optimizer_state, info, rng)
    atomic_write_text(root / "latest", final.name + "\n")
    for old in sorted(p for p in root.glob("step_*") if _STEP_DIR.match(p.name))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _existing(root: Path) -> str:
    names = sorted(p.name for p in root.glob("step_*"))
    return ", ".join(names) if names else "none"


def check_folder(folder: Path, need_state: bool = True) -> Path:
    """The checkpoint folder itself, refused unless its files are there: all three to resume, the weights
    alone to sample or analyse (a pushed run carries the optimizer state only with --with-optimizer)."""
    folder = Path(folder)
    if need_state and (folder / "state.pt").exists() and not (folder / "state.safetensors").exists():
        raise CheckpointError(f"{folder}: a normlab 0.1 checkpoint (state.pt, a pickle); it is not loaded because a "
                              "pickle can run code. Retrain the run, or load only its weights (model.safetensors)")
    missing = [f for f in (FILES if need_state else FILES[:1]) if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"{folder}: incomplete checkpoint, missing {', '.join(missing)}")
    return folder


def latest_checkpoint(run_dir: Path, need_state: bool = False) -> Path | None:
    """The checkpoint `latest` points to; None when the run never wrote one. Without `latest` beside step
    folders (a kill between a run's first checkpoint folder and its first `latest`), the newest folder: a
    folder only gets its step_N name once all its files are written. An empty, hand-edited or dangling
    `latest` is an error that names what exists, never a silent restart."""
    root = Path(run_dir) / "checkpoints"
    if not root.exists() and not root.is_symlink():
        return None
    if not root.is_dir():   # refused before a resume cuts metrics.jsonl back to "no checkpoint" (step 0)
        raise CheckpointError(f"{root}: not a directory; a run keeps its checkpoints in that folder (move the file "
                              "away, or start the run again under another name)")
    pointer = root / "latest"
    if not pointer.exists() and not pointer.is_symlink():
        steps = sorted((p for p in root.glob("step_*") if _STEP_DIR.match(p.name) and p.is_dir()),
                       key=lambda p: int(p.name[5:]))
        return check_folder(steps[-1], need_state) if steps else None
    name = read_text(pointer, max_bytes=256).strip()
    if not _STEP_DIR.match(name):
        raise CheckpointError(f"{pointer} holds {name!r}, not a checkpoint name like step_000100; existing "
                              f"checkpoints: {_existing(root)}")
    if not (root / name).is_dir():
        raise CheckpointError(f"{pointer} points to {name}, which does not exist; existing checkpoints: "
                              f"{_existing(root)}")
    return check_folder(root / name, need_state)


def load_weights(model: nn.Module, folder: Path) -> None:
    """Weights from folder/model.safetensors into `model`: keys and shapes must match exactly."""
    from safetensors.torch import load_model

    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    _check_weights(path, model)
    try:
        load_model(model, str(path), strict=True)
    except Exception as err:  # SafetensorError (corrupt/truncated), RuntimeError (keys or shapes differ)
        raise _safetensors_error(path, err) from None


def read_state(folder: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]], torch.Tensor | None]:
    """(state.json's dict, optimizer state by parameter name, torch RNG state or None), validated."""
    from safetensors.torch import load_file

    folder = check_folder(folder)
    info = _read_info(folder)
    try:
        tensors = load_file(str(folder / "state.safetensors"))
    except Exception as err:  # SafetensorError, OSError
        raise _safetensors_error(folder / "state.safetensors", err) from None
    by_name: dict[str, dict[str, torch.Tensor]] = {}
    rng = _checked_rng(folder, tensors.pop("rng/torch", None))
    for key, t in tensors.items():
        head, _, rest = key.partition("/")
        name, _, field = rest.rpartition("/")
        if head != "optimizer" or not name or field not in _OPT_KEYS:
            raise CheckpointError(f"{folder / 'state.safetensors'}: unexpected tensor {key!r}")
        by_name.setdefault(name, {})[field] = t
    if sorted(by_name) != sorted(info.get("optimizer_params", [])):
        raise CheckpointError(f"{folder}: state.safetensors and state.json disagree on which parameters have "
                              "optimizer state (one of them is damaged)")
    _check_moments(folder / "state.safetensors", by_name)
    return info, by_name, rng


def _count(info: dict, key: str, path: Path) -> int:
    value = info.get(key)
    if type(value) is not int or value < 0:   # type(): a JSON `true` is a bool, which isinstance counts as an int
        raise CheckpointError(f"{path}: `{key}` must be a non-negative integer, got {value!r}")
    return value


def _read_info(folder: Path) -> dict:
    """state.json: format, a step equal to the folder's own (step_000004 holds step 4), line counts as integers."""
    path = folder / "state.json"
    info = read_json(path)
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {info.get('format')!r}, this normlab reads {FORMAT}")
    for key in ("step", "metrics_lines", *(("timing_lines",) if "timing_lines" in info else ())):
        _count(info, key, path)
    if _STEP_DIR.match(folder.name) and int(folder.name[5:]) != info["step"]:
        raise CheckpointError(f"{path}: step {info['step']}, but the folder is {folder.name}; the file was edited")
    if not isinstance(info.get("optimizer_params", []), list):
        raise CheckpointError(f"{path}: `optimizer_params` must be a list of parameter names")
    return info


def _checked_rng(folder: Path, rng: torch.Tensor | None) -> torch.Tensor | None:
    """The saved torch RNG state: bytes of the size this torch's generator has (set_rng_state refuses others late)."""
    want = torch.get_rng_state()
    if rng is not None and (rng.dtype != want.dtype or rng.shape != want.shape):
        raise CheckpointError(f"{folder / 'state.safetensors'}: rng/torch is {rng.dtype} {tuple(rng.shape)}, a torch "
                              f"RNG state is {want.dtype} {tuple(want.shape)}; the file is damaged")
    return rng


def _check_moments(path: Path, by_name: dict[str, dict[str, torch.Tensor]]) -> None:
    """Finite moments and a non-negative Adam step: damage is named here, not found later as a 'divergence'."""
    for name, state in by_name.items():
        for key, t in state.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise CheckpointError(f"{path}: optimizer {key} of {name} holds non-finite values; the file is damaged")
            if key == "step" and bool((t < 0).any()):
                raise CheckpointError(f"{path}: optimizer step of {name} is negative ({t.flatten()[0].item()}); "
                                      "the file is damaged")


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def _check_weights(path: Path, model: nn.Module) -> None:
    """Every tensor of model.safetensors in the dtype the model holds it (load_model would cast fp16 silently)."""
    from safetensors import safe_open

    want = {k: v.dtype for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    except Exception as err:  # SafetensorError, OSError
        raise _safetensors_error(path, err) from None
    for key, dtype in found.items():
        expected = _SAFETENSORS_DTYPES.get(want.get(key), dtype)
        if key in want and dtype != expected:
            raise CheckpointError(f"{path}: {key} is {dtype}, the model holds it as {expected}; the file was "
                                  "converted or damaged (it is not cast silently)")


def _check_finite(path: Path, model: nn.Module) -> None:
    for key, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: {key} holds non-finite values; the file is damaged (a checkpoint is "
                                  "never written once the loss is non-finite)")


def load_state(folder: Path, model: nn.Module) -> tuple[dict, dict, torch.Tensor | None]:
    """Weights into `model`, and (info, optimizer state by name, rng) for the caller's optimizer."""
    info, by_name, rng = read_state(folder)
    load_weights(model, folder)
    _check_finite(Path(folder) / "model.safetensors", model)   # on resume only: `sample` may still look at them
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in by_name]
    if info["step"] > 0 and missing:   # Adam keeps state for every parameter after one step: it was deleted
        raise CheckpointError(f"{folder}: no optimizer state for {', '.join(missing[:3])}"
                              f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''} (state.json and "
                              "state.safetensors were edited); resuming would restart their moments")
    return info, by_name, rng
