"""qkv_stats: per-head max attention logit (what QK-Clip compares with tau) and the q / k / v norms per layer.

Kimi K2's QK-Clip (arXiv 2507.20534) acts per head on S_h = max q.k/sqrt(D) over the batch; here that
number per layer and head on the probe batch (`per_head_max_logit`, layers x heads; `max/<layer>` its
max over heads, i.e. logit_stats' attn_max), from the tapped q and k (after RoPE and any q/k norm,
before clamp / cap; the attention module's own scale). The L2 norms of the per-head q, k and v vectors,
mean over batch, heads and positions (`q/<layer>`, `k/<layer>`, `v/<layer>`): logit growth is q or k
growing (Dehghani et al. 2023; Wortsman et al. 2023). v is read where the attention taps it (`tap_v`).
With model.attn.sink=true the learned sink logits per head too (`sink/<layer>` their mean, `sink_logits`
layers x heads).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Figure, Probe, register_probe
from .logit_stats import finite_max
from .recorder import ATTENTION_PATTERNS, attention_label, labels_array


def head_max(scores: torch.Tensor) -> np.ndarray:
    """max over batch, queries and visible keys per head (masked entries are -inf): B,H,T,S -> H."""
    s = scores.detach().double()
    return s.masked_fill(torch.isnan(s), float("inf")).amax(dim=(0, 2, 3)).cpu().numpy()


@register_probe("qkv_stats")
class QKVStats(Probe):
    """per-head max logit q.k/sqrt(D) (QK-Clip's S_h) and mean ||q||, ||k||, ||v|| per head vector, per layer."""

    patterns = ATTENTION_PATTERNS + ("**.tap_v",)
    figures = (Figure("heads", "per_head_max_logit", "probe_head_max_logit.png", "Max attention logit per head",
                      "max q.k/sqrt(D) over the probe batch per layer and head (what train.qk_clip caps at tau), "
                      "early / middle / late in training.", cmap="inferno"),) + tuple(
        Figure("layers", t, f"probe_{t}_norm.png", f"Mean ||{t}|| per head vector, per layer",
               f"The L2 norm of the per-head {t} vectors (after RoPE and any norm), mean over the probe batch, "
               "over training.", log=True) for t in ("q", "k", "v"))

    def reduce(self, view):
        out, rows, labels = {}, [], []
        for a in view.attention:
            m = head_max(a.scores)
            rows.append(m), labels.append(a.label)
            out[f"max/{a.label}"] = finite_max(a.scores)
        for tap in ("q", "k", "v"):
            for name, t in view.matching(f"**.tap_{tap}"):
                parent = name.rsplit(".", 1)[0] if "." in name else ""
                out[f"{tap}/{attention_label(parent)}"] = float(t.detach().double().norm(dim=-1).mean())
        if labels and len({len(r) for r in rows}) == 1:
            out["per_head_max_logit"], out["labels"] = np.stack(rows), labels_array(labels)
        sinks = [(n, m) for n, m in view.model.named_modules() if n.endswith(".sink") and hasattr(m, "weight")]
        for name, m in sinks:
            out[f"sink/{attention_label(name.rsplit('.', 1)[0])}"] = float(m.weight.detach().double().mean())
        if sinks:
            out["sink_logits"] = np.stack([m.weight.detach().double().cpu().numpy() for _, m in sinks])
        return out
