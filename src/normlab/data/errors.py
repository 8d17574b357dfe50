"""One-line ConfigErrors for the data layer: a missing optional package, a library's message, the cache folder.

Bad input (a file, a setting, a missing extra) must reach the CLI as a ConfigError, which it prints
as `error: ...` with exit code 2; a library traceback or a ModuleNotFoundError says nothing useful.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..config import ConfigError

HF_EXTRA = "pip install 'normlab[hf]'"


def first_line(err: Exception) -> str:
    """The first line of a library exception's message (they run to pages), at most 300 characters."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def require(module: str, feature: str):
    """Import `module`, or say which feature needs its package and how to install it."""
    package = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        # the package itself missing is the usual case; a broken dependency of it is named too
        missing = (err.name or package).split(".")[0]
        why = "" if missing == package else f" (importing it failed: {first_line(err)})"
        raise ConfigError(f"{feature} needs the {package} package: {HF_EXTRA}{why}") from None


def cache_folder(cache_dir: str | Path, *parts: str) -> Path:
    """<data.cache_dir>/<parts>, created if missing; a cache_dir that is a file or unwritable is one line."""
    root = Path(cache_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"data.cache_dir={cache_dir} is a file, not a folder; point it at a folder (it is created "
                          "if missing)")
    folder = root.joinpath(*parts)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"data.cache_dir={cache_dir}: cannot create {folder} ({err.strerror or err}); point it at "
                          "a writable folder") from None
    return folder
