"""peri (Peri-LN, = Sandwich-LN): x + N_out(F(N_in(x))), and a final norm."""
from .base import norm, register_placement, sublayer


@register_placement("peri", ["in", "out"], True, "x + N_out(F(N_in(x))); final N",
                    "Kim et al. 2025 (Peri-LN), arXiv 2502.02732; = Sandwich-LN (Ding et al. 2021)", generic=True)
def peri(block, sub, x):
    return x + norm(block, sub, "out")(sublayer(block, sub)(norm(block, sub, "in")(x)))
