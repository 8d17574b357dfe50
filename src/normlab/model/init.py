"""Weight init: N(0, init_std) everywhere (embeddings: embed_init_std where set); residual output projections scaled
down on request.

`resid_init_scale` multiplies the std of attention/MLP output projections (seed 001's fix is 0.01);
`depth_scaled_init` divides it by sqrt(2 * n_layer) (GPT-2, Radford et al. 2019, section 2.3).
Norm modules keep their own init (gain 1, bias 0, or their kind's rule); a linear layer flagged
`keeps_own_init` (GatedNorm's gate with its `torch` init) keeps the init it was built with.
"""
from __future__ import annotations

import math

from torch import nn

from ..config import ModelConfig


def init_weights(model: nn.Module, cfg: ModelConfig) -> None:
    resid_std = cfg.init_std * cfg.resid_init_scale
    if cfg.depth_scaled_init:
        resid_std /= math.sqrt(2 * cfg.n_layer)
    for module in model.modules():
        if getattr(module, "keeps_own_init", False):
            continue
        if isinstance(module, nn.Linear):
            std = resid_std if getattr(module, "is_residual_proj", False) else cfg.init_std
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, cfg.embed_init_std or cfg.init_std)
