"""squash_saturation: the share of a point-wise norm's inputs on the flat part of its squashing function.

DyT, Derf and GatedDyT replace a norm by tanh(a x) or erf(a x + s); where the argument is large the
function is flat (tanh(2) = 0.964, erf(2) = 0.995) and passes almost no gradient. Saturation = the
share of elements with |argument| > 2, argument = the norm's own `squash_argument(x)` (a x for DyT,
a x + s for Derf: the issue's |a x| > 2, with Derf's shift included since it moves the flat part).
Read from the input of every norm module that has `squash_argument` (any kind that declares one),
pooled per layer (`share/<layer>`), for the final norm (`final`), per module (`module/<name>`) and
over all (`all`); a model without such norms gives an empty summary.
"""
from __future__ import annotations

from .base import Figure, Probe, register_probe
from .recorder import layer_of, short_name

THRESHOLD = 2.0


@register_probe("squash_saturation")
class SquashSaturation(Probe):
    """share of DyT/Derf inputs with |a*x (+ s)| > 2 (the flat part of tanh/erf), per layer and per norm."""

    input_patterns = ("**.norm_*",)
    figures = (Figure("layers", "share", "probe_squash_saturation.png", "Saturated share of DyT / Derf inputs",
                      "Share of the inputs of each layer's point-wise norms (DyT, Derf, GatedDyT) whose argument "
                      "|a x + s| exceeds 2, where tanh / erf are flat, over training (seed 004-style regime study, "
                      "arXiv 2604.23434: saturation tracks when removing the norm helps)."),)

    def reduce(self, view):
        out, per_layer, total = {}, {}, [0, 0]
        for name, x in view.inputs.items():
            module = view.model.get_submodule(name)
            if not hasattr(module, "squash_argument"):
                continue
            over = int((module.squash_argument(x).abs() > THRESHOLD).sum())
            n = x.numel()
            out[f"module/{short_name(name)}"] = over / n
            key = "final" if name.rsplit(".", 1)[-1] == "norm_final" else f"share/{layer_of(name)}"
            counts = per_layer.setdefault(key, [0, 0])
            counts[0], counts[1] = counts[0] + over, counts[1] + n
            total[0], total[1] = total[0] + over, total[1] + n
        out.update({k: o / n for k, (o, n) in per_layer.items()})
        if total[1]:
            out["all"] = total[0] / total[1]
        return out
