"""ngpt_eigen_lrs: the effective eigen learning rates |alpha_A|, |alpha_M| (|alpha_C|) of nGPT, per layer.

Loshchilov et al. 2024 (arXiv 2410.01131, eq. 10-11): h <- Norm(h + alpha (h_A - h)), alpha a learned
per-channel vector stored scaled (NVIDIA/ngpt's eigen-LR trick); the effective value is what the
ScaledVector module returns. Read from the modules of any model that has them (nGPT, the nGPT
encoder-decoder); any other model gives an empty summary, so the probe can stay on for every run.
"""
from __future__ import annotations

import re

from .base import Figure, Probe, register_probe

ALPHAS = ("alpha_attn", "alpha_cross", "alpha_mlp")


def stack_layer(name: str) -> str:
    """blocks.3 -> layer3; encoder.0 -> encoder.layer0; decoder.1 -> decoder.layer1."""
    m = re.fullmatch(r"(?:(.*)\.)?(\d+)", name)
    if not m:
        return name
    stack = m.group(1) or ""
    return f"layer{m.group(2)}" if stack in ("", "blocks") else f"{stack}.layer{m.group(2)}"


@register_probe("ngpt_eigen_lrs")
class NgptEigenLrs(Probe):
    """effective nGPT eigen learning rates |alpha_A| / |alpha_M| / |alpha_C| per layer (mean over channels)."""

    figures = tuple(Figure("layers", a, f"probe_eigen_lrs_{a}.png", f"nGPT eigen learning rate |{a}| per layer",
                           "The effective step size of nGPT's hypersphere update per layer (mean over channels) "
                           "over training; it starts at model.ngpt.alpha_init (0.05).") for a in ALPHAS)

    def reduce(self, view):
        out = {}
        for name, module in view.model.named_modules():
            for attr in ALPHAS:
                scaled = getattr(module, attr, None)
                if scaled is not None and callable(scaled) and hasattr(scaled, "init_scaling"):
                    v = scaled().detach().abs().double().cpu().numpy()
                    out[f"{attr}/{stack_layer(name)}"], out[f"vec/{attr}/{stack_layer(name)}"] = float(v.mean()), v
        return out
