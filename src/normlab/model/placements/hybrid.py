"""hybrid (HybridNorm): q, k, v each normalized after their projections, no attention pre-norm, and the
norm on the stream between attention and MLP.

Zhuo et al. 2025, arXiv 2503.04598; official code BryceZhuo/HybridNorm dense_model/olmo/model.py
(read): with Y = X + Attn(N(X W_q), N(X W_k), N(X W_v)) the block returns N(Y) + FFN(N(Y)) (their
ffn_norm with ffn_residual_after_norm: the FFN's input and its residual are both the normalized Y,
the paper's "Post-Norm in the FFN"). In slot terms that is a post norm on the attention sublayer,
N(x + Attn(x)), followed by a plain x + MLP(x). The q/k/v norms are per head (size d_model/n_head),
before RoPE, of the model's norm kind: the placement switches the attention's own option
`qkv_norm`. The OLMo code keeps its final norm (ln_f), so does this. HybridNorm* (the paper's
variant; the README's `norm_pos_special_config={0: {attn_norm: True, ffn_residual: False}}`) puts
block 0 in plain pre-norm, q/k/v norms kept: model.norm.hybrid_first_pre=true.
"""
from ...norms import build_norm
from .base import norm, register_placement, sublayer
from .pre import pre


def _setup(block, cfg):
    block.is_pre = cfg.norm.hybrid_first_pre and block.layer_idx == 0
    if block.is_pre:
        return ("in",)
    # only the attention sublayer has a slot: built here, since the block builds a slot for both sublayers
    block.norm_attn_post = build_norm(cfg.norm, cfg.d_model, "attn_post")
    return ()


@register_placement("hybrid", ["post", "in"], True,
                    "h = x + Attn(N q, N k, N v); N(h) + MLP(N(h)); final N",
                    "Zhuo et al. 2025 (HybridNorm), arXiv 2503.04598; BryceZhuo/HybridNorm",
                    setup=_setup, attn={"qkv_norm": True})
def hybrid(block, sub, x):
    if block.is_pre:
        return pre(block, sub, x)
    if sub == "attn":
        return norm(block, "attn", "post")(x + sublayer(block, "attn")(x))
    return x + sublayer(block, sub)(x)


def _hybrid_first_pre_needs_hybrid(cfg) -> str | None:
    n = cfg.model.norm
    if n.hybrid_first_pre and n.placement != "hybrid":
        return (f"model.norm.hybrid_first_pre=true only applies to model.norm.placement=hybrid (got {n.placement!r}): "
                "it makes block 0 of HybridNorm pre-norm (HybridNorm*)")
    return None
