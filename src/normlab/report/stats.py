"""Small statistics for reports: mean ± std over seeds, and a three-way verdict for claims."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Stat:
    mean: float
    std: float
    values: list[float]

    def fmt(self, digits: int = 2) -> str:
        if not np.isfinite(self.mean):
            return "n/a"
        if len(self.values) < 2 or len(set(self.values)) == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def stat(values) -> Stat:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return Stat(float("nan"), float("nan"), [])
    return Stat(float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, vals)


@dataclass
class Claim:
    text: str          # the seed's claim, in words
    seed_value: str    # what the seed reported
    ours: str          # what we measured
    verdict: str       # "reproduced" | "not reproduced" | "inconclusive"
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def compare_lower(a: Stat, b: Stat) -> str:
    """Is a lower than b? 'inconclusive' when the gap is within the larger seed std."""
    if not (np.isfinite(a.mean) and np.isfinite(b.mean)):
        return "inconclusive"
    gap = b.mean - a.mean
    noise = max(a.std, b.std)
    if abs(gap) <= noise:
        return "inconclusive"
    return "reproduced" if gap > 0 else "not reproduced"
