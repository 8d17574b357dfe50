"""attn_entropy: entropy of each head's attention rows (nats), and the share of heads in "entropic overload".

Jha & Reagen 2024 (arXiv 2410.09637, train_utils.py): ent = -sum_s A[t,s] log A[t,s] per query row,
averaged over batch and queries, per head and per layer. Query t of a causal row sees t+1 keys, so
its maximum entropy is log(t+1) (0 for t = 0): a head is overloaded when the mean over rows t >= 1 of
ent_t / log(t+1) is at least probes.overload_threshold (3/4, the authors' follow-up definition).
Rows that need not sum to 1 (model.attn.softmax=softpick or sigmoid, or a sink): the entropy is that of
the row renormalized to sum 1 (where the attention that is paid goes; for softmax rows a no-op), so it
still lies in [0, log(t+1)]; a row with no mass at all (softpick can give one) has no entropy and is
left out. How much is paid is reported beside it: `mass/<layer>`, the mean row sum (1 for softmax).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .base import Figure, Probe, register_probe
from .recorder import ATTENTION_PATTERNS, labels_array


def row_entropy(probs: torch.Tensor) -> torch.Tensor:
    """-sum p log p over the key axis of each row renormalized to sum 1 (0 log 0 = 0; a row of zeros -> NaN):
    B,H,T,S -> B,H,T."""
    mass = probs.sum(-1, keepdim=True)
    p = probs / mass.masked_fill(mass == 0, float("nan"))
    return -torch.special.xlogy(p, p).sum(-1)


def row_max_entropy(probs: torch.Tensor, causal: bool) -> torch.Tensor:
    """log(number of visible keys) per query row: log(t+1) for causal rows (end-aligned), else log S."""
    T, S = probs.shape[-2:]
    visible = torch.arange(T, device=probs.device) + 1 + (S - T) if causal else torch.full((T,), S)
    return torch.log(visible.to(probs.dtype))


def head_entropy(probs: torch.Tensor, causal: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean entropy in nats, mean normalized entropy) per head, NaN rows left out: B,H,T,S -> H, H."""
    ent = row_entropy(probs)  # B,H,T
    top = row_max_entropy(probs, causal)  # T
    keep = top > 0
    norm = ent[..., keep] / top[keep]
    return ent.nanmean(dim=(0, 2)), norm.nanmean(dim=(0, 2))


@register_probe("attn_entropy")
class AttnEntropy(Probe):
    """mean -sum A log A per layer/head (nats); overload = share of heads above 3/4 of log(t+1) (Jha & Reagen 2024)."""

    patterns = ATTENTION_PATTERNS
    figures = (
        Figure("heads", "per_head", "probe_entropy_heads.png", "Head-wise attention entropy (nats)",
               "Mean entropy of each head's attention rows, per layer, early / middle / late in training (seed "
               "004's heatmap). Look for layers whose heads all sit near the maximum log(t+1): near-uniform "
               "attention, the 'entropic overload' of norm-free GELU models."),
        Figure("layers", "", "probe_entropy_layers.png", "Layer-wise attention entropy during training (nats)",
               "Mean attention entropy per layer over training. Collapse toward 0 in deep layers is 'entropy "
               "collapse' (instability); staying at the maximum means attention never learned to focus."),
    )

    def reduce(self, view):
        out, ents, norms, labels = {}, [], [], []
        for a in view.attention:
            ent, norm = head_entropy(a.probs, a.causal)
            ents.append(ent.double().cpu().numpy())
            norms.append(norm.double().cpu().numpy())
            labels.append(a.label)
            out[a.label] = float(np.nanmean(ents[-1])) if np.isfinite(ents[-1]).any() else math.nan
            out[f"overload/{a.label}"] = float(np.mean(norms[-1] >= self.cfg.overload_threshold))
            out[f"mass/{a.label}"] = float(a.probs.sum(-1).double().mean())
        if not labels:
            return {}
        out["overload"] = float(np.mean(np.concatenate(norms) >= self.cfg.overload_threshold))
        out["per_head"], out["per_head_norm"] = np.stack(ents), np.stack(norms)
        out["labels"] = labels_array(labels)
        return out
