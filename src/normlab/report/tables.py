"""Descriptive tables: mean ± sd over seeds, per variant (the statistics of claims live in claims.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Stat:
    mean: float
    std: float
    values: list[float]
    expected: int = 0            # runs the variant should have (0: unknown)

    def fmt(self, digits: int = 2) -> str:
        if not np.isfinite(self.mean):
            return "n/a"
        text = f"{self.mean:.{digits}f}"
        if len(self.values) > 1 and len(set(self.values)) > 1:
            text += f" ± {self.std:.{digits}f}"
        if self.expected and len(self.values) < self.expected:
            text += f" (n={len(self.values)}/{self.expected})"
        return text


def stat(values, expected: int = 0) -> Stat:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return Stat(float("nan"), float("nan"), [], expected)
    return Stat(float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, vals, expected)


@dataclass
class Row:
    metric: str
    cells: dict[str, Stat]
    digits: int = 2


def metric_row(label: str, fn, groups: dict, digits: int = 3) -> Row:
    """One table row: fn(run) per run of each variant, mean ± sd over its seeds."""
    return Row(label, {v: stat((fn(r) for r in rs), len(rs)) for v, rs in groups.items()}, digits)


def entropy_floor(run) -> float | None:
    """A synthetic source's exact best achievable loss (data/synthetic.py), from the run's summary; else None."""
    return ((run.summary.get("data") or {}).get("val") or {}).get("entropy_floor_nats")


def common_rows(groups: dict) -> list[Row]:
    from .metrics import final_val_bpb, final_val_loss

    return [metric_row("Parameters", lambda r: r.summary.get("params"), groups, 0),
            metric_row("Final val loss", final_val_loss, groups, 3),
            metric_row("Final val bits/byte", final_val_bpb, groups, 3),
            *([metric_row("Entropy floor of the synthetic source (nats/token)", entropy_floor, groups, 4)]
              if any(entropy_floor(r) is not None for rs in groups.values() for r in rs) else []),
            Row("Diverged runs", {v: stat([sum(r.status == "diverged" for r in rs)]) for v, rs in groups.items()}, 0)]
