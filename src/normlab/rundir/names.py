"""Paths read from run-directory files must stay inside the run directory."""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError


def inside(root: Path, relative: str, what: str) -> Path:
    """root / relative, refused unless it resolves inside root (no absolute paths, no '..', no symlink escape)."""
    root = Path(root).resolve()
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        raise ConfigError(f"{what}: {relative!r} must be a relative path inside {root}")
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise ConfigError(f"{what}: {relative!r} points outside {root}; refusing to read or write there")
    return target
