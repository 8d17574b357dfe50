"""Small statistics for reports: mean ± std over seeds, t-intervals, and a three-way verdict for claims."""
from __future__ import annotations

import math
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


def t_quantile(p: float, df: int) -> float:
    """Student-t quantile (scipy.stats.t.ppf) for p in (0.5, 1): bisection on the CDF, whose upper half
    is a numerical integral of the density. Written here only to keep scipy out of the dependencies;
    accurate to about 1e-3 for df >= 1 (tests compare with the printed table)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def mass(q: float) -> float:  # P(0 < T < q)
        x = np.linspace(0.0, q, 20001)
        return float(np.trapezoid(np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df)), x))

    lo, hi = 0.0, 1.0
    while mass(hi) < p - 0.5:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mass(mid) < p - 0.5 else (lo, mid)
    return (lo + hi) / 2


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Two-sided t confidence interval of the mean over seeds; (nan, nan) with fewer than 2 values."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if len(vals) < 2:
        return float("nan"), float("nan")
    mean, sem = float(np.mean(vals)), float(np.std(vals, ddof=1)) / math.sqrt(len(vals))
    half = t_quantile(0.5 + level / 2, len(vals) - 1) * sem
    return mean - half, mean + half
