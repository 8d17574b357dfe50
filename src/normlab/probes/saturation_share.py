"""saturation_share: the share of a point-wise norm's inputs on the flat part of tanh / erf.

Verma 2026 ("When Does Removing LayerNorm Help?", arXiv 2604.23434; lucky-verma/dyt-composition-study
code/activation_analysis.py): the fraction of pre-tanh values |alpha x| > 2 over every DyT layer,
49 % at 1M training tokens vs 21-23 % at 118M for their 85M model. Here the argument is the norm's
own `squash_argument(x)` (alpha x for DyT and GatedDyT, alpha x + s for Derf), read with forward
pre-hooks in a forward of its own on the probe batch (View.x): per layer (`share/<layer>`), the
final norm (`final`) and pooled (`all`). A model without such norms gives an empty summary.
"""
from __future__ import annotations

from .base import Probe, register_probe
from .recorder import layer_of

THRESHOLD = 2.0   # |argument| > 2: tanh(2) = 0.964, the code's reported threshold


@register_probe("saturation_share")
class SaturationShare(Probe):
    """share of DyT / Derf inputs with |alpha x (+ s)| > 2, per layer and pooled (Verma 2026)."""

    patterns = ()
    figures = ()  # drawn by experiments/dyt-regime/figures.py; TODO(lead): one of this and the frontier's
    # squash_saturation (same threshold, same argument) at merge

    def reduce(self, view):
        model, x = view.model, view.x
        squashers = [(n, m) for n, m in model.named_modules() if hasattr(m, "squash_argument")]
        if x is None or not squashers:
            return {}
        counts: dict[str, list[int]] = {}
        handles = []

        def count(name, module, args):
            arg = module.squash_argument(args[0])
            key = "final" if name.endswith("norm_final") else f"share/{layer_of(name)}"
            c = counts.setdefault(key, [0, 0])
            c[0] += int((arg.abs() > THRESHOLD).sum())
            c[1] += arg.numel()
        for name, module in squashers:
            handles.append(module.register_forward_pre_hook(lambda m, args, name=name: count(name, m, args)))
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
        out = {k: over / n for k, (over, n) in counts.items() if n}
        total = [sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())]
        if total[1]:
            out["all"] = total[0] / total[1]
        return out
