"""normfree: entropic overload of the early layers (Jha & Reagen 2024; overload = a head's mean entropy at
least probes.overload_threshold, 3/4, of its maximum log(t+1)), read from the attn_entropy probe."""
from __future__ import annotations

import re

import numpy as np

from normlab.report.metrics import metric


def overload_by_layer(run) -> dict[int, float]:
    """{layer: share of heads in overload} at the run's last probe step ({} without probe data)."""
    probes = run.probes
    out = {}
    for key, series in (probes.scalars if probes else {}).items():
        m = re.fullmatch(r"attn_entropy/overload/layer(\d+)", key)
        if m and series:
            out[int(m.group(1))] = series[max(series)]
    return out


def early(values: dict[int, float]) -> float | None:
    if not values:
        return None
    n_early = max(1, (max(values) + 1) // 2)
    return float(np.mean([values[i] for i in range(n_early) if i in values]))


@metric("early_overload", discrete=True)
def early_overload(run):
    """Share of heads in entropic overload over the first half of the layers, at the last probe step."""
    return early(overload_by_layer(run))
