"""attn_sinks: mean attention mass on key position 0, per layer and head.

Xiao et al. 2023 (StreamingLLM, arXiv 2309.17453): per head, the mean over query rows t (all of
them, t = 0 included, where it is 1 by construction) and the batch of A[t, 0], post-softmax.
"""
from __future__ import annotations

import numpy as np

from .base import Figure, Probe, register_probe
from .recorder import ATTENTION_PATTERNS, labels_array


@register_probe("attn_sinks")
class AttnSinks(Probe):
    """mean_t A[t, 0] per layer/head: attention mass on the first position (Xiao et al. 2023, StreamingLLM)."""

    patterns = ATTENTION_PATTERNS
    figures = (Figure("heads", "per_head", "probe_sinks.png", "Attention mass on position 0",
                      "Mean attention on the first token per layer and head at the last probe step (StreamingLLM's "
                      "sink). Values near 1 are heads that park their attention on position 0.", steps="last",
                      cmap="magma"),)

    def reduce(self, view):
        out, rows, labels = {}, [], []
        for a in view.attention:
            mass = a.probs[..., 0].mean(dim=(0, 2)).double().cpu().numpy()  # H
            rows.append(mass)
            labels.append(a.label)
            out[a.label] = float(mass.mean())
        if labels:
            out["per_head"], out["labels"] = np.stack(rows), labels_array(labels)
        return out
