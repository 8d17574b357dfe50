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
- `train.cpu_malloc=retain` keeps freed tensor memory in the process (glibc mallopt), see
  `retain_freed_memory`.
- `train.dtype=bfloat16` runs the forward under autocast; on CUDA TF32 matmuls are allowed and SDPA
  picks the flash kernel by itself (causal, no mask, bf16).
References: PyTorch docs "torch.compile" and "Compile time caching in torch.compile";
nanoGPT train.py (TF32 flags, autocast context, fused AdamW).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import inspect
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def setup_backends(device: torch.device, cfg: TrainConfig) -> None:
    """TF32 matmuls and convolutions on CUDA (10-bit mantissa inputs, fp32 accumulation); on the CPU,
    glibc keeps freed tensor memory when train.cpu_malloc=retain."""
    if device.type == "cpu" and cfg.cpu_malloc == "retain":
        retain_freed_memory()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
_retained = False


def retain_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse instead of handing them back to the kernel.

    By default glibc serves blocks over its mmap threshold (128 KiB, adapting up to 32 MiB) with
    fresh mmaps and trims the heap top on free, so on the CPU each step's activations and
    gradients fault in and zero pages anew: measured 22-27 % of a training step at d 256 x block 256
    for normlab and the nanoGPT-style reference alike (benchmarks/RESULTS.md, "Allocator") and up to
    2x on single memory-bound kernels. The cost is that the process keeps its peak heap. This is the
    same reason Intel's PyTorch launcher preloads jemalloc/tcmalloc. Process-wide and idempotent;
    returns False where there is no glibc (macOS, musl) and nothing changed.
    """
    global _retained
    if _retained:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # older glibc caps the mmap threshold at 32 MiB (HEAP_MAX_SIZE / 2): fall back to that cap
    mapped = any(mallopt(_M_MMAP_THRESHOLD, size) for size in (1 << 30, 32 << 20))
    _retained = bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)) and mapped
    return _retained


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
