"""NORMS registry: norm kind name -> nn.Module class taking (dim, cfg, role).

A kind is one small file with one class decorated by `register_norm`; every module of this folder
is imported (registry.import_all), so the file is the registration. `role` says where the norm sits
(attn_in, attn_out, attn_post, mlp_in, mlp_out, mlp_post, final, q, k) for kinds whose init depends
on it (DyT). Kind-specific knobs live in a nested `Options` dataclass filled strictly from
`model.norm.options`; a registered config rule checks them before any model is built.
A class attribute `normalizes = False` marks a kind that does not rescale by a statistic of its
input (DyT, identity): the validity matrix (model/validity.py) keeps it off the residual sum.
Stacked training (training/stacked.py) runs a kind with x of shape [E, N, C] and every parameter
with a leading member axis broadcast against it ([E, 1, C] for a per-channel vector, [E, 1, 1] for
a scalar): a forward must be written so that broadcasting does the right thing, and take a fused
path (kernels.py, F.rms_norm, F.layer_norm) with its parameters only when `kernels.plain(*params)`
(RMSNorm and LayerNorm run the fused kernel without them, then apply the members' broadcast ones).
"""
from ..registry import import_all
from .base import NORMS, build_norm, describe, norm_options, register_norm

import_all(__name__, __path__, skip=("base", "kernels"))  # every other module of this folder is one norm kind

__all__ = ["NORMS", "build_norm", "describe", "norm_options", "register_norm"]
