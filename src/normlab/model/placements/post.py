"""post (Post-LN, the original Transformer): N(x + F(x)), no final norm."""
from .base import norm, register_placement, sublayer


@register_placement("post", ["post"], False, "N(x + F(x)); no final N", "Vaswani et al. 2017, arXiv 1706.03762",
                    generic=True)
def post(block, sub, x):
    return norm(block, sub, "post")(x + sublayer(block, sub)(x))
