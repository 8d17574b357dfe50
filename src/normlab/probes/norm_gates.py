"""norm_gates: the mean gate value per channel of every gated norm (GatedNorm, GatedDyT), on the probe batch.

GatedNorm's gate sigmoid(W_up silu(W_down y)) depends on the input, so it is not a parameter norm_weights can
record: this probe reads each gate's pre-sigmoid output (the `gate_up` linear of the norm) and keeps the mean
over tokens of the sigmoid per channel (`vec/<norm>`, npz) and its minimum (`<norm>/min`). Seed 000's reading
(Qiu et al. 2026, arXiv 2601.22966): the gate is low on the residual-sink channel, doing what a tiny RMSNorm
gain does there.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Figure, Probe, register_probe
from .recorder import short_name


@register_probe("norm_gates")
class NormGates(Probe):
    """mean sigmoid gate per channel of each gated norm (GatedNorm / GatedDyT) on the probe batch."""

    patterns = ("**.gate_up",)
    figures = (Figure("channels", "vec/", "probe_norm_gates.png", "Gated norms: mean gate per channel",
                      "Mean sigmoid gate of every gated norm per channel at the last probe step, by channel index "
                      "(left) and sorted (right), seed 0. Seed 000: the gate is low on the residual-sink channel."),)

    def reduce(self, view):
        out = {}
        for name, z in view.matching("**.gate_up"):
            gate = torch.sigmoid(z.detach().double()).reshape(-1, z.shape[-1]).mean(0).cpu().numpy()
            key = short_name(name.rsplit(".", 1)[0])
            out[f"vec/{key}"] = gate
            out[f"{key}/min"] = float(np.min(gate))
        return out
