"""mixln (Mix-LN): the first ⌊frac·L⌋ blocks post-norm, the rest pre-norm, and a final norm."""
import math

from .base import register_placement
from .post import post
from .pre import pre


def mixln_post_layers(n_layer: int, frac: float) -> int:
    """How many of the first blocks are post-norm: floor(frac * n_layer) (Mix-LN's POST_NUM)."""
    return math.floor(frac * n_layer + 1e-9)  # the epsilon keeps 0.25 * 8 = 2 from flooring to 1


def _setup(block, cfg):
    block.is_post = block.layer_idx < mixln_post_layers(cfg.n_layer, cfg.norm.mixln_post_frac)
    return ("post",) if block.is_post else ("in",)


@register_placement("mixln", ["post", "in"], True, "first ⌊frac·L⌋ blocks post, the rest pre; final N",
                    "Li et al. 2024 (Mix-LN), arXiv 2412.13795; nikitus20/mixln", setup=_setup)
def mixln(block, sub, x):
    return post(block, sub, x) if block.is_post else pre(block, sub, x)
