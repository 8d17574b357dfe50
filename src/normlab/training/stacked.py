"""Stacked training: E same-shape runs (seeds, learning rates, ...) as one model in one process.

At the lab's sizes a step is dispatch overhead, not arithmetic (a prepost step is ~2.5 MFLOP and
~5 ms), so E runs cost about as much as one when every op works on all of them at once.
The stacked model is the plain model's own module tree (its forward code unchanged) in which
- every nn.Linear becomes StackedLinear (weights [E, out, in], one batched matmul),
- every nn.Embedding becomes StackedEmbedding (one gather over E tables),
- every other module with parameters (norm kinds, ReZero's gate) is wrapped by StackedLeaf, which
  views x as [E, N, C] and hands the module its parameters with a leading member axis that
  broadcasts ([E, 1, C]); norm kinds are written for that (norms/__init__.py).
Activations are [E*B, T, C], member-major, so attention, MLP activations and reshapes need no change.
All parameters live in one flat tensor [E, P] (each module takes views of it in forward), so the
per-member loss, gradient norm, clipping and Adam/AdamW update are a handful of ops for any model:
member k gets its own learning-rate schedule, clipping threshold, weight decay, betas and eps.
Member k draws its own batches (its seed) and starts from its own init (built by the plain model
under its seed), so it computes what run k computes alone, up to float rounding: batched matmuls
and the formula form of the norms round differently from the plain path (measured in RESULTS.md).
A member whose loss goes non-finite is frozen (its gradients are masked, its learning rate is 0)
and the others go on; each member keeps its own run directory, callbacks and forensics.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import IGNORE
from .optim import param_groups
from .token_loss import bf16_lm_losses

# The flat gradient buffer's span views are strided (row stride P): autograd accumulates into them in
# place all the same; its one-time note that this "may impair performance" is about a copy we measured.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


@dataclass
class Span:
    """One plain parameter's place in the flat [E, P] buffer."""
    name: str
    shape: tuple
    offset: int
    numel: int
    decay: bool


class Flat:
    """The [E, P] parameter buffer (and its gradient buffer), and the spans that map it back to plain names.

    Each plain parameter is one leaf Parameter [E, *shape] that shares storage with `data` and whose
    .grad is a view of `grad`, so autograd accumulates every gradient straight into the flat buffer
    (a leaf per span, not slices of one flat leaf: the backward of a slice allocates and fills a zero
    tensor of the whole buffer, measured at 60 % of a step with ~100 slices), and the optimizer,
    the per-member norms and clipping then see one [E, P] tensor."""

    def __init__(self, models: list[nn.Module], device):
        plain = models[0]
        decayed = {id(p) for p in param_groups(plain, 1.0)[0]["params"]}
        self.spans: dict[str, Span] = {}
        offset = 0
        for name, p in plain.named_parameters():
            self.spans[name] = Span(name, tuple(p.shape), offset, p.numel(), id(p) in decayed)
            offset += p.numel()
        self.E, self.P = len(models), offset
        dtype = next(plain.parameters()).dtype
        self.data = torch.empty(self.E, self.P, device=device, dtype=dtype)
        self.grad = torch.zeros_like(self.data)
        for k, m in enumerate(models):
            for name, p in m.named_parameters():
                s = self.spans[name]
                self.data[k, s.offset:s.offset + s.numel] = p.detach().reshape(-1)
        self.leaves: dict[str, nn.Parameter] = {}
        for name, s in self.spans.items():
            leaf = nn.Parameter(self.data[:, s.offset:s.offset + s.numel].view(self.E, *s.shape))
            leaf.grad = self.grad[:, s.offset:s.offset + s.numel].view(self.E, *s.shape)
            self.leaves[name] = leaf
        self.layouts: dict[str, tuple] = {}   # name -> (lead, transposed) of a leaf `relayout` reshaped
        self._claims: dict[str, set] = {}
        self.decay_mask = torch.zeros(self.P, device=device, dtype=dtype)
        for s in self.spans.values():
            if s.decay:
                self.decay_mask[s.offset:s.offset + s.numel] = 1.0

    def view(self, name: str, lead: tuple = (), transposed: bool = False) -> torch.Tensor:
        """All members' values of one plain parameter: [E, *lead, *shape] (lead = broadcast dims), its last two
        dims swapped if `transposed` (a Linear weight as bmm takes it: [E, in, out]). The leaf itself where
        `claim` gave it that layout; else a view taken afresh in every forward, never cached: the optimizer
        updates `data` in place, and a view made before an in-place update gets its grad_fn regenerated as
        AsStridedBackward0, whose backward allocates, zero-fills and copies (a 5-member prepost step: 12.4 ms
        cached, 7.8 ms fresh)."""
        leaf = self.leaves[name]
        if self.layouts.get(name) == (lead, transposed):
            return leaf
        t = leaf.view(self.E, *lead, *self.spans[name].shape) if lead else leaf   # the leaf is [E, *shape]
        return t.transpose(1, 2) if transposed else t

    def claim(self, name: str, lead: tuple = (), transposed: bool = False) -> None:
        """A module will read `name` in this layout: `relayout` then makes the leaf itself that layout (a strided
        view of the same memory), so no step makes that view or transpose, nor its backward node (one of
        each per Linear and norm per step). A name claimed in two layouts (tied weights) keeps [E, *shape]."""
        self._claims.setdefault(name, set()).add((lead, transposed))

    def relayout(self) -> None:
        """Rebuild the leaf of each name claimed in exactly one layout other than [E, *shape] (after the modules
        are converted; bit-identical to viewing it in each forward: the same memory goes to the same kernels)."""
        for name, wanted in self._claims.items():
            if len(wanted) != 1 or next(iter(wanted)) == ((), False):
                continue
            lead, transposed = next(iter(wanted))
            s = self.spans[name]

            def form(t, s=s, lead=lead, transposed=transposed):
                t = t[:, s.offset:s.offset + s.numel].view(self.E, *lead, *s.shape)
                return t.transpose(1, 2) if transposed else t
            leaf = nn.Parameter(form(self.data))
            leaf.grad = form(self.grad)   # strided like its leaf: autograd accumulates into it in place
            self.leaves[name], self.layouts[name] = leaf, (lead, transposed)

    def member(self, tensor: torch.Tensor, k: int, name: str) -> torch.Tensor:
        s = self.spans[name]
        return tensor[k, s.offset:s.offset + s.numel].view(s.shape)


class StackedLinear(nn.Module):
    def __init__(self, flat: Flat, weight: str, bias: str | None):
        super().__init__()
        self.flat, self.weight, self.bias = flat, weight, bias
        flat.claim(weight, transposed=True)
        if bias:
            flat.claim(bias, (1,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E, wt = self.flat.E, self.flat.view(self.weight, transposed=True)    # E, in, out
        h = x.reshape(E, -1, x.shape[-1])                                    # E, N, in (member-major rows)
        y = torch.baddbmm(self.flat.view(self.bias, (1,)), h, wt) if self.bias else torch.bmm(h, wt)
        return y.reshape(*x.shape[:-1], wt.shape[2])


class StackedEmbedding(nn.Module):
    def __init__(self, flat: Flat, weight: str):
        super().__init__()
        self.flat, self.weight = flat, weight
        flat.claim(weight)
        self.members = torch.arange(flat.E, device=flat.data.device)[:, None]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        table = self.flat.view(self.weight)                  # E, V, C (never reshape it: E > 1 would copy)
        rows = table[self.members, idx.reshape(self.flat.E, -1)]   # E, N, C: member k reads its own table
        return rows.reshape(*idx.shape, table.shape[-1])


class StackedLeaf(nn.Module):
    """A module with its own parameters (a norm kind, a gate), run on x viewed as [E, N, C] with each
    parameter given a leading member axis that broadcasts ([E, 1, C], [E, 1, 1] for a scalar)."""

    def __init__(self, flat: Flat, inner: nn.Module, names: dict[str, str]):
        super().__init__()
        self.flat, self.inner, self.names = flat, inner, {}
        for attr, name in names.items():   # attribute -> (plain name, broadcast dims of its member-axis view)
            del inner._parameters[attr]
            self.names[attr] = (name, (1,) * max(0, 2 - len(flat.spans[name].shape)))
            flat.claim(*self.names[attr])
        self._bind()

    def _bind(self) -> None:
        for attr, (name, lead) in self.names.items():
            self.inner.__dict__[attr] = self.flat.view(name, lead)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._bind()
        return self.inner(x.reshape(self.flat.E, -1, x.shape[-1])).reshape(x.shape)


def stack_models(models: list[nn.Module], device) -> tuple[nn.Module, Flat]:
    """The stacked module tree of E structurally identical plain models, and its flat parameters."""
    flat = Flat(models, device)
    stacked = copy.deepcopy(models[0]).to(device)
    tied = {id(p): n for n, p in models[0].named_parameters()}

    def name_of(module_path: str, attr: str) -> str:
        p = models[0].get_submodule(module_path)._parameters[attr] if module_path else models[0]._parameters[attr]
        return tied[id(p)]

    def convert(parent: nn.Module, path: str) -> None:
        for child_name, child in list(parent.named_children()):
            child_path = f"{path}.{child_name}" if path else child_name
            if isinstance(child, nn.Linear):
                new = StackedLinear(flat, name_of(child_path, "weight"),
                                    name_of(child_path, "bias") if child.bias is not None else None)
            elif isinstance(child, nn.Embedding):
                new = StackedEmbedding(flat, name_of(child_path, "weight"))
            elif any(p is not None for p in child._parameters.values()):
                convert(child, child_path)
                new = StackedLeaf(flat, child, {a: name_of(child_path, a) for a, p in child._parameters.items()
                                                if p is not None})
            else:
                convert(child, child_path)
                continue
            setattr(parent, child_name, new)
    if any(p is not None for p in stacked._parameters.values()):
        raise ValueError("stacking needs every parameter inside a submodule")
    convert(stacked, "")
    flat.relayout()
    return stacked, flat


def member_losses(logits: torch.Tensor, y: torch.Tensor, E: int, z_loss: torch.Tensor) -> torch.Tensor:
    """Per-member mean cross-entropy over non-ignored targets (+ z-loss), [E]; lm_loss per member."""
    if logits.dtype == torch.bfloat16:   # blockwise in float32, no float32 copy of the logits (token_loss.py)
        return bf16_lm_losses(logits, y, E, z_loss)
    V = logits.shape[-1]
    flat = logits.float().reshape(-1, V)
    target = y.reshape(-1)
    ce = F.cross_entropy(flat, target, ignore_index=IGNORE, reduction="none").view(E, -1)
    keep = (target != IGNORE).view(E, -1).float()
    count = keep.sum(1).clamp(min=1)
    loss = ce.sum(1) / count
    if bool((z_loss != 0).any()):
        lse = torch.logsumexp(flat, dim=-1).view(E, -1)
        loss = loss + z_loss * ((lse.square() * keep).sum(1) / count)
    return loss


def clip_per_member(grad: torch.Tensor, norm: torch.Tensor, max_norm: torch.Tensor) -> None:
    """Rescale each member's gradient (norm [E], stacked_grads.GradGroups.norms) to max_norm (0 = no clip), with
    clip_grad_norm_'s coefficient max_norm / (norm + 1e-6), clamped to 1."""
    coef = torch.where(max_norm > 0, (max_norm / (norm + 1e-6)).clamp(max=1.0), torch.ones_like(norm))
    grad.mul_(coef[:, None])
