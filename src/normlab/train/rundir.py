"""The run directory contract: atomic file writes, metrics.jsonl, meta.json, summary.json.

    <run>/config.yaml  meta.json  tokenizer.json  metrics.jsonl  summary.json  samples.txt  checkpoints/
          probes/step_N.npz  forensics.json  forensics.npz  forensics/last_good/   (probes, divergence)
Every whole-file write goes through a temporary file and os.replace, so a crash never leaves a
half-written JSON/YAML behind. metrics.jsonl is append-only and is truncated back to the resume
step on resume, so a resumed run's log equals an uninterrupted one.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results should be readable like any file
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_npz(path: Path, arrays: dict) -> None:
    """numpy arrays by key into one .npz, written atomically (probes/step_N.npz, forensics.npz)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


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


def read_json(path: Path):
    return json.loads(Path(path).read_text())


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
    from .. import __version__

    return {"normlab": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "git_sha": git_sha(), "device": device,
            "threads": torch.get_num_threads(), "start": now(), "end": None, "status": "running"}


class MetricsWriter:
    """Append-only JSON lines; `truncate_from(step)` drops records at or after a step (resume)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def truncate_from(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", -1) < step]
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))

    def write(self, records: list[dict]) -> None:
        if not records:
            return
        with open(self.path, "a") as f:
            for record in records:
                f.write(json.dumps(_clean(record)) + "\n")
            f.flush()


_NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _restore(record: dict) -> dict:
    return {k: _NON_FINITE.get(v, v) if isinstance(v, str) else v for k, v in record.items()}


def read_metrics(path: Path) -> list[dict]:
    """Records of metrics.jsonl, with the 'nan'/'inf' strings turned back into floats."""
    path = Path(path)
    if not path.exists():
        return []
    return [_restore(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
