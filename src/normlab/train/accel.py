"""Speed switches of a run: torch.compile (norms or whole model), bf16 autocast, TF32, fused Adam.

Everything here changes how fast a step runs, never what it computes (up to float rounding):
- `train.compile=norms` compiles each norm module in place. One graph serves every instance of a
  kind (parameters are graph inputs), so the cost is seconds once per process and shape family;
  inductor fuses the 4-6 elementwise passes of an RMSNorm into one loop, which is what brings it
  level with F.layer_norm's hand-written kernel (benchmarks/norm_kernels.py measures both).
- `train.compile=model` compiles the whole model for the training forward/backward; evaluation and
  sampling keep the eager module (their shapes vary, and they run rarely).
- The inductor FX-graph cache is persistent (`train.compile_cache`), so a second process with the
  same graphs loads kernels instead of building them.
- `train.dtype=bfloat16` runs the forward under autocast; on CUDA TF32 matmuls are allowed and SDPA
  picks the flash kernel by itself (causal, no mask, bf16).
References: PyTorch docs "torch.compile" and "Compile time caching in torch.compile";
nanoGPT train.py (TF32 flags, autocast context, fused AdamW).
"""
from __future__ import annotations

import contextlib
import inspect
import os
from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def setup_backends(device: torch.device) -> None:
    """TF32 matmuls and convolutions on CUDA (10-bit mantissa inputs, fp32 accumulation)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, cfg: TrainConfig):
    """The forward's precision context: bf16 autocast when asked, else a no-op."""
    if cfg.dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[cfg.dtype])


def set_compile_cache(path: str) -> None:
    """Point inductor's on-disk caches at `path` (read by inductor at each lookup)."""
    if not path:
        return
    cache = Path(os.path.expanduser(path))
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
    torch._inductor.config.fx_graph_cache = True  # persistent across processes (default in recent torch)


def compile_norms(model: nn.Module) -> int:
    """Compile every registered norm module of `model` in place; return how many were compiled."""
    from ..norms import NORMS

    kinds = tuple(cls for name, cls in NORMS.items() if name != "identity")
    count = 0
    for module in model.modules():
        if isinstance(module, kinds):
            module.compile()
            count += 1
    return count


def accelerate(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """Return the module the training step calls: `model` itself, or a compiled view of it.

    `model` keeps its eager forward for evaluation, sampling, probes and checkpoints (the compiled
    view shares its parameters)."""
    if cfg.compile == "none":
        return model
    set_compile_cache(cfg.compile_cache)
    if cfg.compile == "norms":
        compile_norms(model)
        return model
    return torch.compile(model)


def optimizer_flags(cfg: TrainConfig, device: torch.device, cls) -> dict:
    """{'fused': True} or {'foreach': True} for torch.optim.Adam/AdamW, per `train.fused_optimizer`.

    Fused Adam runs one kernel over all parameters (CPU since torch 2.4, CUDA); foreach batches the
    per-parameter ops; "forloop" is the for-loop reference implementation."""
    choice = cfg.fused_optimizer
    has_fused = "fused" in inspect.signature(cls).parameters and device.type in ("cpu", "cuda")
    if choice == "auto":
        choice = "fused" if has_fused else "foreach"
    if choice == "fused":
        return {"fused": True}
    return {"foreach": choice == "foreach"}
