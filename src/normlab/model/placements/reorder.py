"""reorder (OLMo 2's reordered norm): x + N(F(x)), no norm on the sublayer input, and a final norm.

OLMo 2 (Team OLMo, Walsh et al. 2025, arXiv 2501.00656; HF transformers modeling_olmo2.py, read via
norm-methods.md section 4): h = x + RMSNorm(Attn(x)); out = h + RMSNorm(MLP(h)). Final norm: kept,
as Olmo2Model does (`self.norm` before the head): the sublayers' outputs are normalized but the
residual stream that sums them never is, so its scale grows with depth and the head needs a
normalized input. OLMo 2 also uses QK-norm; here that stays a separate switch (model.attn.qk_norm).
"""
from .base import norm, register_placement, sublayer


@register_placement("reorder", ["out"], True, "x + N(F(x)); final N",
                    "OLMo 2 (Walsh et al. 2025), arXiv 2501.00656; HF modeling_olmo2.py", generic=True)
def reorder(block, sub, x):
    return x + norm(block, sub, "out")(sublayer(block, sub)(x))
