"""norm_weights: every learned parameter of every norm module (gains, biases, lambda, gates, DyT alpha).

Generic over norm kinds: any module that is an instance of a registered norm class (norms.NORMS),
including QK-norms, contributes each of its parameters, so a new kind needs no probe edit. The
per-channel vectors are the seed-000 figures (weights by channel index and sorted), per layer.
"""
from __future__ import annotations

import numpy as np

from ..norms import NORMS
from .base import Figure, Probe, register_probe
from .recorder import short_name


@register_probe("norm_weights")
class NormWeights(Probe):
    """each norm parameter per layer and channel: mean and min |w| to metrics, the vectors to npz."""

    figures = (Figure("channels", "vec/", "probe_norm_weights.png", "Norm weights by channel",
                      "Every learned norm parameter at the last probe step, by channel index (left) and sorted "
                      "(right), seed 0 (seed 000's weight plots). A channel whose gain falls toward 0 is "
                      "suppressing a residual sink."),)

    def reduce(self, view):
        kinds = tuple(NORMS.values())
        out = {}
        for mname, module in view.model.named_modules():
            if not isinstance(module, kinds):
                continue
            for pname, p in module.named_parameters(recurse=False):
                key = short_name(f"{mname}.{pname}")
                w = p.detach().double().flatten().cpu().numpy()
                out[key] = float(w.mean())
                out[f"{key}/min_abs"] = float(np.abs(w).min())
                out[f"vec/{key}"] = w
        return out
