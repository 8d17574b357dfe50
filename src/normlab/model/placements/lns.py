"""lns (LayerNorm Scaling): pre-norm with each norm's output scaled by 1/sqrt(l), l = layer index from 1.

Sun et al. 2025, "The Curse of Depth in Large Language Models", arXiv 2502.05795: in Pre-LN the
residual stream's variance grows with depth, so deep blocks act close to the identity; scaling
LN(x) by 1/sqrt(l) in block l (both sublayers; the final norm is not scaled) damps that growth.
The paper drops depth-scaled init with LNS (the 1/sqrt(l) replaces it), so
model.depth_scaled_init=true is refused with this placement. [formula from the issue]
"""
import math

from .base import norm, register_placement, sublayer


def lns_scale(layer_idx: int) -> float:
    """1/sqrt(l) with l = layer_idx + 1 (the first block is l = 1: unscaled)."""
    return 1.0 / math.sqrt(layer_idx + 1)


def _setup(block, cfg):
    block.lns_scale = lns_scale(block.layer_idx)
    return ("in",)


@register_placement("lns", ["in"], True, "x + F(N(x)/√ℓ), ℓ = layer from 1; final N",
                    "Sun et al. 2025 (The Curse of Depth, LayerNorm Scaling), arXiv 2502.05795", setup=_setup)
def lns(block, sub, x):
    return x + sublayer(block, sub)(norm(block, sub, "in")(x) * block.lns_scale)


def _lns_replaces_depth_scaled_init(cfg) -> str | None:
    m = cfg.model
    if m.norm.placement == "lns" and m.depth_scaled_init:
        return ("model.norm.placement=lns with model.depth_scaled_init=true is refused: LayerNorm Scaling's 1/sqrt(l) "
                "on each norm output already damps the deep blocks, and Sun et al. 2025 train it without the "
                "GPT-2 1/sqrt(2L) init scaling (stacking both shrinks the deep updates twice); set "
                "model.depth_scaled_init=false")
    return None
