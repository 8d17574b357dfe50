"""metrics.jsonl: one JSON object per record, append-only; deterministic content.

Everything in metrics.jsonl is a function of the config and the seed (losses, learning rates,
gradient norms, evaluations, probe scalars), so two runs of one config, or a run killed and
resumed, give byte-identical files. Wall-clock figures (tokens/s) go to timing.jsonl beside it.
A resume truncates the file to the number of lines its checkpoint recorded, so nothing written
after the checkpoint survives and nothing before it is lost. A torn last line (a kill during a
write) is dropped by the readers and by that truncation.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..config import ConfigError
from .files import _clean

_NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _restore(record: dict) -> dict:
    return {k: _NON_FINITE.get(v, v) if isinstance(v, str) else v for k, v in record.items()}


def _complete_lines(path: Path) -> list[bytes]:
    """The file's lines that end with a newline (a torn last line has none)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    lines = data.split(b"\n")
    return [line for line in lines[:-1]]  # the part after the last newline is empty or torn


def _parse(path: Path, n: int, line: bytes) -> dict:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path}:{n}: not a JSON record (the file is corrupt)") from None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise ConfigError(f"{path}:{n}: a record must be a JSON object with an integer `step`")
    return record


def read_metrics(path: Path) -> list[dict]:
    """Records of metrics.jsonl (or timing.jsonl), with 'nan'/'inf' strings turned back into floats."""
    return [_restore(_parse(path, n, line)) for n, line in enumerate(_complete_lines(path), 1) if line.strip()]


class MetricsWriter:
    """Append records as JSON lines; counts the complete lines so a checkpoint can record where it stood."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lines = len(_complete_lines(self.path))

    def truncate_to(self, lines: int, validate: bool = True, steps: int | None = None) -> None:
        """Keep the first `lines` complete lines (the state at a checkpoint); drop the rest. The kept lines
        must be records (`validate`): a damaged line is refused now, not after the resumed run has trained.
        `steps`: the checkpoint's step, whose first `lines` lines hold exactly one step record per step before it
        (a count that disagrees would silently cut records, or keep records the resumed run writes again)."""
        kept = _complete_lines(self.path)
        if lines > len(kept):
            raise ConfigError(f"{self.path}: has {len(kept)} complete lines but its checkpoint recorded {lines}; "
                              "the file was edited or truncated")
        if validate:
            records = [_parse(self.path, n, line) for n, line in enumerate(kept[:lines], 1) if line.strip()]
            found = sum("loss" in r and "lr" in r for r in records)   # a step record (evals and probes have neither)
            if steps is not None and found != steps:
                raise ConfigError(f"{self.path}: its first {lines} lines hold {found} step records, but the checkpoint "
                                  f"is at step {steps}; the checkpoint's metrics_lines or this file was edited")
        data = b"".join(line + b"\n" for line in kept[:lines])
        from .files import atomic_write_bytes

        atomic_write_bytes(self.path, data)
        self.lines = lines

    def write(self, records: list[dict]) -> None:
        if not records:
            return
        text = "".join(json.dumps(_clean(r), allow_nan=False) + "\n" for r in records)
        try:
            with open(self.path, "a") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:   # a full disk: a torn last line at most, which a resume drops
            from .files import write_error

            raise write_error(self.path, err) from None
        self.lines += len(records)


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
