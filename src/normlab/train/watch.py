"""Stability watch: max |activation| of the residual stream and max |attention logit|, via forward hooks.

Seed 001's story is told by two numbers: the residual stream growing without a norm, and the
pre-softmax attention logits q.k/sqrt(D) reaching the range where exp() overflows. Hooks sit on
each block's output and on the attention tap points `tap_q`/`tap_k` (after RoPE), so the fused
attention kernel stays in use; the logits are recomputed (before any clamp/softcap) only on watched
steps. Values stay on the device as 0-d tensors until the loop's once-per-interval flush.
Deliberately minimal: the `probes` package (branch probes) replaces it with per-layer probes.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class StabilityWatch:
    def __init__(self, model: nn.Module):
        self.active = False
        self._q: torch.Tensor | None = None
        self._act: list[torch.Tensor] = []
        self._logit: list[torch.Tensor] = []
        self.handles = []
        blocks = getattr(model, "blocks", [])
        for block in blocks:
            self.handles.append(block.register_forward_hook(self._on_block))
        for name, module in model.named_modules():
            if name.endswith("tap_q"):
                self.handles.append(module.register_forward_hook(self._on_q))
            elif name.endswith("tap_k"):
                self.handles.append(module.register_forward_hook(self._on_k))

    def _on_block(self, module, inputs, out):
        if self.active:
            self._act.append(out.detach().abs().amax().float())

    def _on_q(self, module, inputs, out):
        if self.active:
            self._q = out.detach()

    @torch.no_grad()
    def _on_k(self, module, inputs, k):
        if not self.active or self._q is None:
            return
        q, k = self._q, k.detach()   # B,H,T,D
        scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])  # B,H,T,T
        T = scores.shape[-1]
        causal = torch.ones(T, T, dtype=torch.bool, device=scores.device).tril()
        self._logit.append(scores.abs().masked_fill(~causal, 0).amax())
        self._q = None

    def pop(self) -> dict[str, torch.Tensor]:
        """Maxima over the layers of the forward passes since the last pop (0-d tensors, no host sync)."""
        out = {}
        if self._act:
            out["max_act"] = torch.stack(self._act).amax()
        if self._logit:
            out["max_attn_logit"] = torch.stack(self._logit).amax()
        self._act, self._logit = [], []
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
