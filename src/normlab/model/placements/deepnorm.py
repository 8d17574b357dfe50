"""deepnorm (DeepNet, decoder-only): N(α·x + F(x)) with α = (2L)^¼; v, out-proj and MLP init × (8L)^-¼."""
import torch
from torch import nn

from .base import norm, register_placement, sublayer


def deepnorm_constants(n_layer: int) -> tuple[float, float]:
    """(α, β) of decoder-only DeepNorm: α = (2N)^¼ on the residual, β = (8N)^-¼ on the init."""
    return (2 * n_layer) ** 0.25, (8 * n_layer) ** -0.25


def _setup(block, cfg):
    block.residual_alpha = deepnorm_constants(cfg.n_layer)[0]
    return ("post",)


@torch.no_grad()
def _init(model, cfg):
    # torchscale decoder.py divides fc1, fc2, out_proj and v_proj (never q, k) by (8N)^¼ after init.
    beta = deepnorm_constants(cfg.n_layer)[1]
    for block in model.blocks:
        block.attn.qkv.weight[2 * cfg.d_model:].mul_(beta)  # rows of the fused q|k|v linear: v only
        block.attn.proj.weight.mul_(beta)
        for layer in block.mlp.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(beta)


@register_placement("deepnorm", ["post"], False, "N(α·x + F(x)), α=(2L)^¼; init β=(8L)^-¼; no final N",
                    "Wang et al. 2022 (DeepNet), arXiv 2203.00555; microsoft/torchscale decoder.py",
                    setup=_setup, init=_init)
def deepnorm(block, sub, x):
    return norm(block, sub, "post")(block.residual_alpha * x + sublayer(block, sub)(x))
