"""active_dormant: each head's attention mass on position 0 (BOS) at trigger vs plain positions (Guo et al. 2024).

Guo et al. (arXiv 2410.13835) on Bigram-Backcopy: a head is *dormant* (parks on BOS) where its input is a plain
bigram token and *active* (attends elsewhere, to copy) right after a trigger. The roles come from the data
source (View.roles: 1 where the input token is a trigger, so the next token is a copy; the synthetic
`bigram-backcopy` source gives them). Query rows t >= 1 only (row 0 sees only BOS). Per layer and head:
`plain` and `trigger` (npz, layers x heads), `gap/<layer>` = max over the layer's heads of plain - trigger.
Without roles (any other corpus) only `plain` is reported, over every row t >= 1, with `roles_known` = 0: the
split that defines active vs dormant is not available there, and the probe says so rather than guess.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Figure, Probe, register_probe
from .recorder import labels_array


def bos_mass_by_role(probs: torch.Tensor, roles: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray | None]:
    """probs B,H,T,S; roles B,T (1 = trigger) or None -> (plain H, trigger H): mean A[t, 0] over rows t >= 1
    of each role (nan for a role with no rows)."""
    a0 = probs[..., 1:, 0].double()                                   # B,H,T-1
    if roles is None:
        return a0.mean(dim=(0, 2)).cpu().numpy(), None
    r = roles[:, 1:].to(a0.device).bool()[:, None, :].expand_as(a0)

    def mean(mask):
        n = mask.sum(dim=(0, 2))
        total = (a0 * mask).sum(dim=(0, 2))
        return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, float("nan"))).cpu().numpy()

    return mean(~r), mean(r)


@register_probe("active_dormant")
class ActiveDormant(Probe):
    """BOS mass per head at trigger vs plain positions: dormant on plain tokens, active after triggers (Guo 2024)."""

    patterns = ("**.tap_q", "**.tap_k", "**.tap_pad")
    figures = (Figure("heads", "plain", "probe_dormant_plain.png", "Attention on BOS at plain positions",
                      "Mean attention on position 0 over query rows whose input is a plain (bigram) token, per "
                      "layer and head: high = dormant (Guo et al. 2024).", steps="last", cmap="magma"),
               Figure("heads", "trigger", "probe_dormant_trigger.png", "Attention on BOS at trigger positions",
                      "The same over rows whose input is a trigger (the next token is a copy): an active head "
                      "leaves BOS here. Absent without positional roles (non-synthetic data).", steps="last",
                      cmap="magma"))

    def reduce(self, view):
        roles = getattr(view, "roles", None)
        out, plain, trig, labels = {"roles_known": float(roles is not None)}, [], [], []
        for a in view.attention:
            if not a.causal or a.probs.shape[-2] < 2:
                continue
            p, t = bos_mass_by_role(a.probs, roles)
            plain.append(p), labels.append(a.label)
            out[f"plain/{a.label}"] = float(np.nanmax(p))
            if t is not None:
                trig.append(t)
                out[f"trigger/{a.label}"] = float(np.nanmin(t)) if np.isfinite(t).any() else float("nan")
                gap = p - t
                out[f"gap/{a.label}"] = float(np.nanmax(gap)) if np.isfinite(gap).any() else float("nan")
        if labels and len({len(p) for p in plain}) == 1:
            out.update(plain=np.stack(plain), labels=labels_array(labels))
            if trig:
                out["trigger"] = np.stack(trig)
        return out
