"""attn_sinks: mean attention mass on key position 0, per layer and head.

Xiao et al. 2023 (StreamingLLM, arXiv 2309.17453): per head, the mean over query rows t (all of
them, t = 0 included, where it is 1 by construction for softmax) and the batch of A[t, 0], post-softmax.
Sink rate (Gu et al. 2024, "When Attention Sink Emerges in Language Models", arXiv 2410.10781): the share
of heads whose mean attention to position 0 exceeds probes.sink_threshold (0.3), per layer (`rate/<layer>`)
and over all layers (`rate`). With rows that do not sum to 1 (softpick, sigmoid, a learned sink) A[t, 0]
is the weight the model really puts on v_0, not renormalized: a head whose mass goes to a learned sink
logit (or nowhere, in softpick) does not count as a position-0 sink.
Every sink number needs its uniform baseline: a causal head attending uniformly puts 1/(t+1) on position 0 at
query t, H_T/T on average over T rows (0.34 at T = 8, 0.074 at T = 64), so at short lengths a uniform head
passes 0.3. `uniform` (H_T/T) and `length` (T, the probe batch's evaluation length) are recorded beside the rate.
"""
from __future__ import annotations

import numpy as np

from .base import Figure, Probe, register_probe
from .recorder import ATTENTION_PATTERNS, labels_array


@register_probe("attn_sinks")
class AttnSinks(Probe):
    """mean_t A[t, 0] per layer/head (Xiao et al. 2023); sink rate = share of heads above 0.3 (Gu et al. 2024)."""

    patterns = ATTENTION_PATTERNS
    figures = (Figure("heads", "per_head", "probe_sinks.png", "Attention mass on position 0",
                      "Mean attention on the first token per layer and head at the last probe step (StreamingLLM's "
                      "sink). Values near 1 are heads that park their attention on position 0.", steps="last",
                      cmap="magma"),
               Figure("layers", "rate", "probe_sink_rate.png", "Sink rate per layer",
                      "Share of each layer's heads whose mean attention to position 0 exceeds probes.sink_threshold "
                      "(0.3, Gu et al. 2024) over training. A learned sink logit or softpick lets heads attend "
                      "to nothing instead, which shows up here as a lower rate."),)

    def reduce(self, view):
        out, rows, labels = {}, [], []
        for a in view.attention:
            mass = a.probs[..., 0].mean(dim=(0, 2)).double().cpu().numpy()  # H
            rows.append(mass)
            labels.append(a.label)
            out[a.label] = float(mass.mean())
            out[f"rate/{a.label}"] = float(np.mean(mass > self.cfg.sink_threshold))
        if labels:
            T = view.attention[0].probs.shape[-2]
            if view.attention[0].causal:
                out["uniform"], out["length"] = float(sum(1.0 / t for t in range(1, T + 1)) / T), float(T)
            out["per_head"], out["labels"] = np.stack(rows), labels_array(labels)
            out["rate"] = float(np.mean(np.concatenate(rows) > self.cfg.sink_threshold))
        return out
