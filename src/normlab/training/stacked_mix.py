"""One stack across placements: runs that differ only in where the norms sit train as one stack.

A generic placement (pre, post, none, peri, reorder: `Placement.generic`) is base.slot_formula,
[post](x + [out](F([in](x)))), over the norm slots it builds, with a final norm or without. A mixed stack gives
each member's plain model the union of the members' slots and a final norm where any member has one
(`unified`: a fresh norm in each slot the member lacks, modules in the order a model with every slot has
them, so each member's own parameters keep their relative order in the flat buffer). In the stacked model a
slot that only some members use becomes a `MaskedNorm`: N(x) on the rows of the members that use it, x on the
others. A member's own slots compute what they compute in a stack of its own placement; the slots it lacks pass
x through and get exactly zero gradient, so its weights, Adam state and gradient norms are the bits a stack of
its own placement gives (test_stacked_mix.py). The slots a member lacks live only in the stack: Engine.sync
copies a member's own parameters into its plain model, so checkpoints and probes never see them.

Off by default (train.stack_placements): every member computes every slot of the union (prepost's pre/post/none:
two norms and two selections per sublayer where a pure stack has at most one), and in a tiny model's
dispatch-bound step the norms are a large share of the ops, so on CPU one mixed stack of prepost's 15 runs cost
what its three stacks cost (benchmarks/stack_mix.py, RESULTS.md). Where launches, not norms, dominate (a GPU
running stacks one after another) it may pay: unmeasured.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ..model.gpt import SUBLAYERS
from ..model.placements import PLACEMENTS, has_final_norm
from ..model.placements.base import SLOTS, slot_formula
from ..norms import build_norm

# the config keys whose values may differ between the members of a mixed stack (stacked_loop.stack_key)
MIXED_KEYS = ("model.norm.placement", "model.norm.final")


def mixable(cfg) -> bool:
    """Whether the run may share a stack with runs of other generic placements (train.stack_placements)."""
    return cfg.train.stack_placements and cfg.model.arch == "gpt" and PLACEMENTS[cfg.model.norm.placement].generic


def layout(cfg) -> tuple[tuple[str, ...], bool]:
    """(the norm slots the run's blocks build, whether it has a final norm)."""
    return PLACEMENTS[cfg.model.norm.placement].slots, has_final_norm(cfg.model)


def is_mixed(cfgs) -> bool:
    return len({layout(c) for c in cfgs}) > 1


def unified(models: list[nn.Module], cfgs) -> list[nn.Module]:
    """The members' plain models as stack_models takes them: unchanged for one layout, else each one's union
    model (a copy with a fresh norm in every slot of the union it lacks)."""
    if not is_mixed(cfgs):
        return models
    odd = sorted({c.model.norm.placement for c in cfgs if not PLACEMENTS[c.model.norm.placement].generic})
    if odd or any(c.model.arch != "gpt" for c in cfgs):
        raise ValueError(f"only GPTs with generic placements share a stack across placements, not {odd or 'nGPT'}")
    slots = {s for c in cfgs for s in layout(c)[0]}
    final = any(layout(c)[1] for c in cfgs)
    return [_union_model(m, c.model, slots, final) for m, c in zip(models, cfgs)]


def _union_model(model: nn.Module, cfg, slots: set, final: bool) -> nn.Module:
    union = copy.deepcopy(model)
    like = next(model.parameters())

    def fresh(where: str) -> nn.Module:
        return build_norm(cfg.norm, cfg.d_model, where).to(device=like.device, dtype=like.dtype)
    for block in union.blocks:
        for sub in SUBLAYERS:
            for slot in slots:
                if not hasattr(block, f"norm_{sub}_{slot}"):
                    setattr(block, f"norm_{sub}_{slot}", fresh(f"{sub}_{slot}"))
        norms = [f"norm_{sub}_{slot}" for sub in SUBLAYERS for slot in SLOTS if f"norm_{sub}_{slot}" in block._modules]
        _reorder(block, [n for n in block._modules if n not in norms] + norms)
    if final and union.norm_final is None:
        union.norm_final = fresh("final")
        _reorder(union, [n for n in union._modules if n not in ("norm_final", "lm_head")] + ["norm_final", "lm_head"])
    return union


def _reorder(module: nn.Module, names: list[str]) -> None:
    """Put the module's children in this order (named_parameters follows it: the flat buffer's layout)."""
    children = module._modules
    moved = [(n, children.pop(n)) for n in names]
    children.update(moved)


class MaskedNorm(nn.Module):
    """A norm slot that only some members of a mixed stack use: N(x) on their rows, x on the others' (activations
    are [E*B, ...], member-major). One where on the activations as they are, its mask cached per batch size: in a
    dispatch-bound step every op counts. A member that does not use the slot still runs it, so an activation past
    float range (~1e19, squared) can make its rows' gradients NaN here where its own placement gave inf: only in a
    member that has blown up already, and only in its own rows."""

    def __init__(self, norm: nn.Module, use: torch.Tensor):
        super().__init__()
        self.norm, self.use, self._rows = norm, use, None    # use: [E] bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._rows is None or self._rows.shape[0] != x.shape[0]:
            self._rows = self.use.repeat_interleave(x.shape[0] // self.use.shape[0]).view(-1, *[1] * (x.dim() - 1))
        return torch.where(self._rows, self.norm(x), x)


def mask_slots(stacked: nn.Module, cfgs, device) -> None:
    """Make the stacked union model compute each member's own placement: blocks run slot_formula, and each slot
    (and the final norm) that not every member uses is masked per member."""
    if not is_mixed(cfgs):
        return
    layouts = [layout(c) for c in cfgs]

    def use(test) -> torch.Tensor:
        return torch.tensor([test(slots, final) for slots, final in layouts], device=device)
    for block in stacked.blocks:
        block.placement = dataclasses.replace(block.placement, apply=slot_formula)
        for slot in {s for slots, _ in layouts for s in slots}:
            mask = use(lambda slots, _, slot=slot: slot in slots)
            if not bool(mask.all()):
                for sub in SUBLAYERS:
                    name = f"norm_{sub}_{slot}"
                    setattr(block, name, MaskedNorm(getattr(block, name), mask))
    final = use(lambda _, final: final)
    if bool(final.any()) and not bool(final.all()):
        stacked.norm_final = MaskedNorm(stacked.norm_final, final)
