"""pre (Pre-LN, GPT-2 / Llama): x + F(N(x)), and a final norm before the head."""
from .base import norm, register_placement, sublayer


@register_placement("pre", ["in"], True, "x + F(N(x)); final N", "Xiong et al. 2020, arXiv 2002.04745", generic=True)
def pre(block, sub, x):
    return x + sublayer(block, sub)(norm(block, sub, "in")(x))
