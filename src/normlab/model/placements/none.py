"""none: x + F(x), no norms (CS336's layer_norm_ablation); model.norm.final=always keeps a final norm."""
from .base import register_placement, sublayer


@register_placement("none", [], False, "x + F(x); no norms", "CS336 layer_norm_ablation", generic=True)
def none(block, sub, x):
    return x + sublayer(block, sub)(x)
