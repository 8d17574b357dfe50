"""Data parallelism under torchrun: process group, rank-aware batches, DDP / FSDP2 wrapping.

    torchrun --nproc_per_node=N -m normlab train <config> [overrides]

One process per rank; gloo on CPU, NCCL on CUDA (rank r takes cuda:LOCAL_RANK). The global batch
`train.batch_size` is the same at every world size: batches are a pure function of (seed, step),
so every rank builds the same global batch and keeps its own contiguous slice of rows. The loss
is re-weighted by each rank's share of the global target tokens, so the averaged gradient is the
gradient of the global mean loss even when padded rows (doc batching) hold different counts:
one process and N processes then follow the same curve up to float reduction order.
Rank 0 alone writes files; every rank evaluates, so no rank waits on a collective the others skip.
Checkpoints hold full (unsharded) tensors, so a run resumes at any world size.
References: PyTorch DDP notes; FSDP2 `fully_shard` (torch.distributed.fsdp, torchtitan).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..config import ConfigError, TrainConfig
from ..data import IGNORE, Batch, TokenData
from ..model import build_model
from ..rundir import load_state
from .optim import build_optimizer, load_optimizer_state, optimizer_state_by_name


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init(device_name: str) -> DistInfo:
    """Join the process group torchrun describes in the environment; a no-op for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistInfo(rank, world, local_rank)


def device_for(info: DistInfo, device: torch.device) -> torch.device:
    return torch.device("cuda", info.local_rank) if device.type == "cuda" and info.active else device


def check_batch(cfg: TrainConfig, info: DistInfo) -> None:
    if cfg.batch_size % info.world:
        raise ConfigError(f"train.batch_size={cfg.batch_size} (the global batch) must be divisible by the "
                          f"world size {info.world}; choose a multiple of {info.world}")


def local_batch(data: TokenData, batch_size: int, seed: int, step: int, info: DistInfo) -> Batch:
    """This rank's rows of the global batch (seed, step): a contiguous, disjoint slice."""
    if not info.active:
        return data.batch(batch_size, seed, step)
    index = data.batch_index(batch_size, seed, step)
    per = batch_size // info.world
    return data.replay(index[info.rank * per:(info.rank + 1) * per])


def weighted(loss: torch.Tensor, y: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """loss * world * (this rank's target tokens) / (global target tokens), so that DDP's gradient
    average is the gradient of the global mean loss. No host sync; `loss` itself for one process."""
    if not info.active:
        return loss
    local = (y != IGNORE).sum().to(torch.float32)
    total = local.clone()
    dist.all_reduce(total)
    return loss * (info.world * local / total.clamp(min=1))


def mean_across(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over ranks (for logged losses: each rank holds world * its weighted share)."""
    if not info.active:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / info.world


def wrap(model: nn.Module, cfg: TrainConfig, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP or FSDP2 around `model` when several processes run; `model` itself otherwise."""
    if not info.active:
        return model
    if cfg.parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        return fully_shard(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def plain_tensor(value: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP's clipped grad norm) as an ordinary tensor; anything else unchanged."""
    full = getattr(value, "full_tensor", None)
    return full() if full is not None else value


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def full_state(model: nn.Module, optimizer, info: DistInfo) -> tuple[nn.Module | None, dict | None]:
    """(a plain model with full weights, optimizer state by parameter name) for save_checkpoint.

    Under FSDP every rank takes part in the gather and rank 0 receives the full tensors; (None, None)
    on the other ranks. Otherwise the model itself and its name-keyed optimizer state."""
    if not (info.active and _is_fsdp(model)):
        inner = unwrap(model)
        return inner, optimizer_state_by_name(inner, optimizer)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd, optim_sd = get_state_dict(model, optimizer, options=opts)
    if not info.is_main:
        return None, None
    plain = build_model(model.cfg)
    plain.load_state_dict(model_sd)
    return plain, {name: dict(state) for name, state in optim_sd["state"].items()}


def load(ckpt, model: nn.Module, optimizer, cfg: TrainConfig, info: DistInfo) -> dict:
    """Restore a checkpoint written at any world size (one process, DDP, FSDP, stacked); return state.json's dict."""
    if not _is_fsdp(model):
        inner = unwrap(model)
        state, by_name, rng = load_state(ckpt, inner)
        load_optimizer_state(inner, optimizer, by_name, str(ckpt / "state.safetensors"))
    else:  # restore into a plain copy, then hand FSDP full, name-keyed state dicts to shard
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

        plain = build_model(unwrap(model).cfg)
        plain_opt = build_optimizer(plain, cfg)
        state, by_name, rng = load_state(ckpt, plain)
        load_optimizer_state(plain, plain_opt, by_name, str(ckpt / "state.safetensors"))
        opts = StateDictOptions(full_state_dict=True)
        model_sd, optim_sd = get_state_dict(plain, plain_opt, options=opts)
        set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd, options=opts)
    if rng is not None:
        torch.set_rng_state(rng)
    return state


def _is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (torchrun runs; a no-op otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
