"""ngpt_eigen_lrs: the effective eigen learning rates alpha_A, alpha_M of nGPT, per layer (and channel).

Loshchilov et al. 2024 (arXiv 2410.01131, eq. 10-11): h <- Norm(h + alpha (h_A - h)), with alpha a
learned per-channel vector stored scaled (alpha_init / alpha_scale). The probe asks the model:
a model that has them defines `eigen_lrs() -> {name: tensor}` returning the *effective* values;
any other model is skipped (an empty summary), so the probe can stay on for every run.
"""
from __future__ import annotations

from . import Probe, register_probe
from .recorder import short_name


@register_probe("ngpt_eigen_lrs")
class NgptEigenLrs(Probe):
    """effective nGPT eigen learning rates alpha_A / alpha_M per layer, via model.eigen_lrs() (skipped if absent)."""

    def reduce(self, view):
        source = getattr(view.model, "eigen_lrs", None)
        if not callable(source):
            return {}
        out = {}
        for name, value in source().items():
            v = value.detach().double().flatten().cpu().numpy()
            key = short_name(name)
            out[key], out[f"vec/{key}"] = float(v.mean()), v
        return out
