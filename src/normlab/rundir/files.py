"""Atomic file writes and validating reads (JSON, text, npz) for run directories.

Every whole-file write goes through a temporary file in the same folder and os.replace, so a crash
never leaves a half-written file behind. Every read that can meet a broken or hand-edited file
raises ConfigError naming the file and what is wrong (never a decoder traceback); npz files are
loaded with allow_pickle=False, so an object array cannot execute code.
"""
from __future__ import annotations

import datetime as _dt
import errno
import io
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..config import ConfigError

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(ConfigError):
    """A file of a run directory could not be written (a full disk, a read-only folder): one line naming it."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = Path(path)


def write_error(path: Path, err: Exception) -> WriteError:
    """The line for a failed write; a full disk is named as such (safetensors reports it in its own words)."""
    text = getattr(err, "strerror", None) or (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    if getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err):
        return WriteError(f"cannot write {path}: no space left on device", path)
    return WriteError(f"cannot write {path}: {text} (check that the folder is a writable directory)", path)


_write_error = write_error


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _write_error(path, err) from None
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results should be readable like any file
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_npz(path: Path, arrays: dict) -> None:
    """numpy arrays by key into one .npz, written atomically (probes/step_N.npz, forensics.npz)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz (no pickled object arrays: allow_pickle=False; nothing but arrays)."""
    try:
        data = np.load(Path(path), allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except Exception as err:  # BadZipFile, ValueError (a pickled object array), EOFError, OSError: all "broken"
        raise ConfigError(f"{path}: not a readable .npz file ({type(err).__name__}: {_first_line(err)})") from None
    odd = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if odd:  # a zip whose members are not .npy arrays (a torch.save file, say) reads back as raw bytes
        raise ConfigError(f"{path}: not a numpy .npz archive (members that are not arrays: {', '.join(odd[:3])})")
    return arrays


def _clean(value):
    """JSON has no NaN/inf: write them as strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2) + "\n")


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def read_text(path: Path, max_bytes: int = 64 << 20) -> str:
    """A UTF-8 text file of a run directory; ConfigError if missing, too large, unreadable or not UTF-8."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{path}: {size} bytes, more than the {max_bytes} this file may have")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None


def read_json(path: Path, kind: type = dict):
    """A JSON file whose top level is `kind` (dict by default); broken files name themselves."""
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if kind is not None and not isinstance(value, kind):
        raise ConfigError(f"{path}: expected a JSON {kind.__name__} at the top level, got {type(value).__name__}")
    return value


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def meta(device: str) -> dict:
    from ..version import __version__

    import torch   # here: a report reads run directories without torch

    return {"normlab": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "git_sha": git_sha(), "device": device,
            "threads": torch.get_num_threads(), "pid": os.getpid(), "start": now(), "end": None, "status": "running"}
