"""nonorm: the largest attention logit over training on a log scale, so a run whose logits overflowed
(non-finite) still has a value: the float32 maximum, larger than any finite logit."""
from __future__ import annotations

import math

from normlab.report.metrics import metric, probe_peak

FLOAT32_MAX = 3.4028235e38


@metric("probe_peak_log10")
def probe_peak_log10(run, key: str):
    """log10 of a probe scalar's max over training; a non-finite value counts as the float32 maximum."""
    peak = probe_peak(run, key)
    if peak is None:
        return None
    return math.log10(min(max(peak, 1e-30), FLOAT32_MAX))
