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


def cpu_has_amx_bf16() -> bool:
    """The CPU's flags list amx_bf16 (Linux /proc/cpuinfo, what lscpu prints; elsewhere unknown: False).
    torch.backends.cpu.get_cpu_capability() names the vector ISA torch dispatches to (AVX512 on AMX and non-AMX
    CPUs alike), so it cannot tell."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def precision(device: torch.device, cfg: TrainConfig) -> dict:
    """What meta.json records of the run's precision; refuses (ConfigError, one line) bfloat16 on a CPU without
    AMX-BF16 unless train.cpu_bf16=force."""
    info = {"dtype": cfg.dtype}
    if device.type != "cpu":
        return info
    amx = cpu_has_amx_bf16()
    info.update(cpu_amx_bf16=amx, cpu_capability=torch.backends.cpu.get_cpu_capability())
    if cfg.dtype == "bfloat16":
        if not amx and cfg.cpu_bf16 != "force":
            from ..config import ConfigError

            raise ConfigError("train.dtype=bfloat16: this CPU has no AMX-BF16 (bf16 matmuls run at about half the "
                              "float32 speed on it); use train.dtype=float32, or train.cpu_bf16=force to run it anyway")
        info["cpu_bf16"] = "amx" if amx else "forced without AMX"
    return info


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
    """The forward's precision context: bf16 autocast when asked, else a no-op. Autocast keeps each weight's bf16
    copy for the whole forward (its cast cache holds leaf tensors that require grad), so a weight is cast once a
    step, not once a use; a stack's weights are one tensor per layer, cast once for all members."""
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
    import torch._functorch.config
    import torch._inductor.config

    torch._inductor.config.fx_graph_cache = True  # persistent across processes (default in recent torch)
    torch._functorch.config.enable_autograd_cache = True   # the backward graphs too (AOTAutograd cache)


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


COSTS = Path(__file__).with_name("compile_costs.json")   # measured by benchmarks/compile_breakeven.py
# Recompiles are bounded by dynamo's recompile_limit (torch's default, 8 graphs per frame, after which that frame runs
# eagerly; benchmarks raise it to time many models in one process) and logged by accelerate.


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, what lscpu prints; elsewhere platform's): compile_costs.json keeps
    one measurement per CPU model, because compiling pays differently on each (RESULTS.md)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def compile_costs(cpu: str | None = None) -> dict:
    """The measured break-even of train.compile=auto on this CPU (compile_costs.json, one entry per CPU model
    measured; {} when the file is absent or broken: auto then stays eager). On a CPU not measured, the most
    cautious of the measured ones: each shape's row from the CPU where compiling paid least (or not at all), and
    the largest break-even, so auto compiles only where compiling paid on every CPU measured."""
    import json

    try:
        data = json.loads(COSTS.read_text())
        machines = [m for m in data["machines"] if isinstance(m, dict) and m.get("cpu")]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}
    cpu = cpu_name() if cpu is None else cpu
    mine = next((m for m in machines if m.get("cpu") == cpu), None)
    if mine is not None or not machines:
        return mine or {}
    never = float("inf")
    worst: dict = {}
    for m in machines:
        for r in m.get("measured", {}).get("rows", []):
            key = (r.get("shape"), r.get("members"))
            worst[key] = max(worst.get(key, r), r, key=lambda x: x.get("break_even_member_steps") or never)
    names = ", ".join(m.get("cpu", "?") for m in machines)
    need = max(m.get("break_even_member_steps") or never for m in machines)
    return {"cpu": f"the most cautious of {names} ({cpu} unmeasured)",
            "break_even_member_steps": None if need == never else need,
            "measured": {"machine": "several", "rows": list(worst.values())}}


def member_gflop(model: nn.Module, members: int, batch_size: int) -> float:
    """The size compile_costs.json's rows are matched by: 6 N x tokens GFLOP per member-step (N = parameters per
    member, tokens = batch x the model's context; the usual training-FLOPs estimate, embeddings included)."""
    cfg = getattr(model, "cfg", None)
    tokens = batch_size * getattr(cfg, "block_size", 1)
    return 6 * sum(p.numel() for p in model.parameters()) / max(members, 1) * tokens / 1e9


def _nearest_row(rows: list, gflop: float, members: int) -> dict | None:
    """The measured row closest to this step in log size and log stack size (None when no row has a size)."""
    import math

    sized = [r for r in rows if r.get("member_gflop")]
    if not sized:
        return None
    return min(sized, key=lambda r: abs(math.log(gflop / r["member_gflop"])) + abs(math.log(members / r["members"])))


def compile_choice(cfg: TrainConfig, device: torch.device, members: int = 1, steps: int | None = None,
                   gflop: float | None = None) -> tuple[str, str]:
    """(mode, why) for train.compile; `auto` resolves to `model` or `none` from the run alone (never from a timing,
    so a config trains the same way on a busy machine and an idle one), with the measurements of
    compile_costs.json (benchmarks/compile_breakeven.py) for this CPU model (`compile_costs`):
    - given the step's size (`gflop`, member_gflop) and the file's rows carry sizes: the row nearest in size and
      stack size decides. Where compiling was slower there, eager; else compiled once steps x members (the
      member-steps left to train in this step function) reaches that row's break-even, `compile seconds /
      eager seconds saved per member-step`;
    - otherwise the file's one break-even (the largest of its paying rows) for every shape.
    Eager on other devices (unmeasured there)."""
    if cfg.compile != "auto":
        return cfg.compile, "asked"
    steps = cfg.steps if steps is None else steps
    if device.type != "cpu":
        return "none", f"auto: eager on {device.type} (the break-even is measured on CPUs only)"
    costs = compile_costs()
    need, where = costs.get("break_even_member_steps"), ""
    row = _nearest_row(costs.get("measured", {}).get("rows", []), gflop, members) if gflop else None
    if row is not None:
        where = f" at the nearest measured shape, {row['shape']} x{row['members']}"
        where += f" on {costs['cpu']}" if costs.get("cpu") else ""
        need = row.get("break_even_member_steps")
        if not need:
            return "none", f"auto: eager (compiling was slower{where}: {row['speedup']:.2f}x)"
    if need is None:
        return "none", f"auto: eager ({COSTS.name} has no break-even)"
    work = steps * members
    if work < need:
        return "none", f"auto: eager ({steps} steps x {members} member(s) = {work} < break-even {need:.0f}{where})"
    return "model", f"auto: compiled ({steps} steps x {members} member(s) = {work} >= break-even {need:.0f}{where})"


class _EagerOnFailure(nn.Module):
    """train.compile=auto's compiled view: where torch.compile cannot build the model's graph (an op inductor
    lacks), the step says so once and goes on eagerly instead of failing a run that was never asked to compile."""

    def __init__(self, model: nn.Module, compiled):
        super().__init__()
        self.model = model
        self.compiled, self.failed = compiled, None

    def forward(self, *args, **kwargs):
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:   # noqa: BLE001  (dynamo and inductor raise many kinds)
                self.failed = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}"
                print(f"train.compile=auto: compiling failed ({self.failed}); training eagerly", file=sys.stderr)
        return self.model(*args, **kwargs)


def accelerate(model: nn.Module, cfg: TrainConfig, members: int = 1, steps: int | None = None,
               device: torch.device | None = None, gflop: float | None = None) -> nn.Module:
    """Return the module the training step calls: `model` itself, or a compiled view of it (compile_choice
    decides `auto`: `members` runs stacked for `steps` more steps, each `gflop` a step, by default measured on
    `model`).

    `model` keeps its eager forward for evaluation, sampling, probes and checkpoints (the compiled
    view shares its parameters)."""
    device = device if device is not None else next(model.parameters()).device
    gflop = member_gflop(model, members, cfg.batch_size) if gflop is None else gflop
    mode, _ = compile_choice(cfg, device, members, steps, gflop)
    if mode == "none":
        return model
    set_compile_cache(cfg.compile_cache)
    torch._logging.set_logs(recompiles=True)   # each recompile is logged (stderr), with its guard failure
    if mode == "norms":
        compile_norms(model)
        return model
    compiled = torch.compile(model)
    return _EagerOnFailure(model, compiled) if cfg.compile == "auto" else compiled


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
