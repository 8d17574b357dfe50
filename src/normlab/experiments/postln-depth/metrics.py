"""postln-depth: the per-block gradient-norm profile at initialization (Xiong et al. 2020, arXiv 2002.04745,
Fig. 3 and Theorem 1), read from the grad_norms probe's step-0 record: the gradient of the first backward,
before any update, so it depends only on the init, the first batch and the depth (not on the LR or warmup).
"""
from __future__ import annotations

import math
import re

import numpy as np

from normlab.report.metrics import metric

_LAYER = re.compile(r"probe/grad_norms/layer(\d+)")


def init_profile(records: list[dict]) -> np.ndarray | None:
    """||grad|| per block (layer0..layerL-1) at step 0, or None without a step-0 grad_norms record."""
    for rec in records:
        if rec.get("step") != 0:
            continue
        found = {int(m.group(1)): v for k, v in rec.items() if (m := _LAYER.fullmatch(k))}
        if found:
            a = np.array([found[i] for i in range(max(found) + 1)], float)
            return a if np.isfinite(a).all() and (a > 0).all() else None
    return None


def quarter(n: int) -> int:
    return max(1, n // 4)


def profile_tilt(profile: np.ndarray) -> float:
    """log10(mean ||grad|| of the last quarter of the blocks / that of the first quarter): > 0 rises toward the
    output, about 0 flat, < 0 falls."""
    q = quarter(len(profile))
    return float(math.log10(profile[-q:].mean() / profile[:q].mean()))


@metric("init_grad_tilt")
def init_grad_tilt(run):
    """At init: log10(||grad|| of the last quarter of the blocks / the first quarter's) (> 0: rises toward the output)."""
    p = init_profile(run.metrics)
    return profile_tilt(p) if p is not None and len(p) >= 2 else None


@metric("init_last_grad_log10")
def init_last_grad_log10(run):
    """At init: log10 of the gradient norm of the last block's parameters (the output side)."""
    p = init_profile(run.metrics)
    return float(math.log10(p[-1])) if p is not None else None
