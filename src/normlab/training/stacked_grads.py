"""Per-member gradient norms of a stack: the clipping norm and the grad_norms probe's rows.

Each is a sum over the member's own parameters in its own order, so a member gets the bits a stack of its own
gives: a float sum's rounding depends on the order and the number of its terms, and the zeros of the slots a
member of a mixed stack lacks (stacked_mix.py) would change both. A stack of one placement is one group (every
row, the flat buffer as it is: no copy); a mixed stack has a group per parameter layout, whose columns are
gathered into the order that layout's own flat buffer has.
"""
from __future__ import annotations

import torch
from torch import nn


class Group:
    """Members with one parameter layout: their rows of the flat buffer, their columns in their own order (None:
    every column, as laid out), and the grad_norms probe's span lengths and span x key matrix for that layout."""

    def __init__(self, members: list[int], own: nn.Module, flat, everything: bool, device):
        from ..probes.grad_norms import GradNormTracker, group_of
        from ..probes.recorder import layer_of

        params = [n for n, _ in own.named_parameters()]
        self.members = members
        self.rows = None if everything else torch.tensor(members, device=device)[:, None]
        self.columns = None if everything else torch.cat(
            [torch.arange(flat.spans[n].offset, flat.spans[n].offset + flat.spans[n].numel) for n in params]).to(device)
        self.names = GradNormTracker(own).names
        self.lengths = torch.tensor([flat.spans[n].numel for n in params], device=device).expand(len(members), -1)
        self.lengths = self.lengths.contiguous()
        matrix = torch.zeros(len(params), len(self.names))
        for i, name in enumerate(params):
            matrix[i, self.names.index(layer_of(name))] = 1
            matrix[i, self.names.index(f"group/{group_of(name)}")] = 1
            matrix[i, -1] = 1
        self.matrix = matrix.to(device)

    def squares(self, grad: torch.Tensor) -> torch.Tensor:
        """The members' squared gradients in their own layout, [members, own P] (float32)."""
        own = grad if self.rows is None else grad[self.rows, self.columns]
        return own.float().pow(2)


class GradGroups:
    def __init__(self, own_models: list[nn.Module], flat, device):
        layouts: dict[tuple, list[int]] = {}
        for row, m in enumerate(own_models):
            layouts.setdefault(tuple(n for n, _ in m.named_parameters()), []).append(row)
        everything = len(layouts) == 1 and next(iter(layouts)) == tuple(flat.spans)
        self.E = flat.E
        self.groups = [Group(rows, own_models[rows[0]], flat, everything, device) for rows in layouts.values()]

    def norms(self, grad: torch.Tensor) -> torch.Tensor:
        """Each member's gradient norm, [E] (what clip_per_member clips by)."""
        if self.groups[0].rows is None:
            return self.groups[0].squares(grad).sum(1).sqrt()
        out = torch.empty(self.E, device=grad.device)
        for g in self.groups:
            out[g.rows[:, 0]] = g.squares(grad).sum(1).sqrt()
        return out

    def rows(self, grad: torch.Tensor) -> list[torch.Tensor]:
        """Each member's grad_norms values (per layer / group / total, its own model's keys), by row."""
        out: list[torch.Tensor] = [None] * self.E
        for g in self.groups:
            # the spans tile the layout in order: one segmented sum (half the time of an index_add_ over P)
            per_span = torch.segment_reduce(g.squares(grad), "sum", lengths=g.lengths, axis=1)
            # a masked sum, not per_span @ matrix: a matmul's summation order depends on E (a [1, S] row goes to
            # another kernel than [2, S]), so a member resumed alone, a stack of one, got per-layer norms 1 ulp apart
            values = (per_span.unsqueeze(-1) * g.matrix).sum(dim=1).sqrt()
            for i, row in enumerate(g.members):
                out[row] = values[i]
        return out
