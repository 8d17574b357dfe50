"""nan_counts: non-finite values per layer, in attention probabilities and in activations.

Jha & Reagen 2024 (train_utils.py) count NaNs of the post-softmax attention per layer and head; we
count NaN and +-inf, in attention (recomputed from the q/k taps) and in every block's output and
its direct children's outputs (attn, mlp, norms), on the probe batch.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Figure, Probe, register_probe
from .recorder import ATTENTION_PATTERNS, labels_array, layer_of


def count_nonfinite(t: torch.Tensor) -> int:
    return int((~torch.isfinite(t)).sum())


@register_probe("nan_counts")
class NanCounts(Probe):
    """count of non-finite values per layer: attention probabilities and block activations (seed 004)."""

    patterns = ATTENTION_PATTERNS + ("**.blocks.*", "**.blocks.*.*")
    figures = (
        Figure("layers", "attn", "probe_nan_attention.png", "Non-finite values in attention probabilities, per layer",
               "NaN/inf counts in the attention probabilities on the probe batch (seed 004). Any non-zero value "
               "marks the layer where numerical failure starts."),
        Figure("layers", "act", "probe_nan_activations.png", "Non-finite values in activations, per layer",
               "NaN/inf counts in each block's outputs on the probe batch."),
    )

    def reduce(self, view):
        out, heads, labels = {}, [], []
        for a in view.attention:
            per_head = (~torch.isfinite(a.probs)).sum(dim=(0, 2, 3)).cpu().numpy().astype(np.int64)
            heads.append(per_head)
            labels.append(a.label)
            out[f"attn/{a.label}"] = float(per_head.sum())
        acts: dict[str, int] = {}
        for name, t in view.matching("**.blocks.*") + view.matching("**.blocks.*.*"):
            acts[layer_of(name)] = acts.get(layer_of(name), 0) + count_nonfinite(t)
        for layer, n in acts.items():
            out[f"act/{layer}"] = float(n)
        out["total"] = float(sum(acts.values()) + sum(int(h.sum()) for h in heads))
        if labels:
            out["attn_per_head"], out["labels"] = np.stack(heads), labels_array(labels)
        if acts:
            out["act"], out["act_labels"] = np.array(list(acts.values()), dtype=np.int64), labels_array(list(acts))
        return out
