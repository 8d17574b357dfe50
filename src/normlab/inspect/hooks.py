"""What to tap in a Hugging Face causal LM, per architecture, and the forward hooks that tap it.

Per family: the decoder blocks (a ModuleList), each block's attention and MLP submodules, and the
projection whose output holds the value vectors v (with how to cut v out of it). Block outputs are the
residual stream after each block (before the final norm, as Sun et al. hook them); attention
probabilities come from the model's own output_attentions under attn_implementation="eager".
Another causal LM gets the generic taps: the ModuleList of config.num_hidden_layers blocks, the usual
attention / MLP names, and v from the attention's v_proj where it has one (else the value drain is
reported as not exposed).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import ConfigError


def _gpt2_v(out: torch.Tensor, cfg) -> torch.Tensor:
    """c_attn's output is [q | k | v] along the last axis, C each."""
    C, H = cfg.hidden_size, cfg.num_attention_heads
    return out[..., 2 * C:].unflatten(-1, (H, C // H))


def _neox_v(out: torch.Tensor, cfg) -> torch.Tensor:
    """query_key_value's output is per head [q | k | v] (B, T, H, 3D), as GPTNeoXAttention views it."""
    H = cfg.num_attention_heads
    qkv = out.unflatten(-1, (H, -1))
    return qkv[..., 2 * qkv.shape[-1] // 3:]


def _plain_v(out: torch.Tensor, cfg) -> torch.Tensor:
    """v_proj's output: the key-value heads (fewer than the query heads under grouped-query attention)."""
    D = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return out.unflatten(-1, (-1, D))


@dataclass(frozen=True)
class Taps:
    blocks: str                     # dotted path of the ModuleList of decoder blocks
    attn: str                       # the attention submodule of a block
    mlp: str                        # the MLP submodule of a block
    value: str = ""                 # the submodule of a block whose output holds v ("" = not exposed)
    cut_v: Callable | None = None   # (that output, config) -> B, T, heads, head_dim


LLAMA = Taps("model.layers", "self_attn", "mlp", "self_attn.v_proj", _plain_v)
FAMILIES = {
    "gpt2": Taps("transformer.h", "attn", "mlp", "attn.c_attn", _gpt2_v),
    "gpt_neox": Taps("gpt_neox.layers", "attention", "mlp", "attention.query_key_value", _neox_v),
    **{kind: LLAMA for kind in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2", "granite",
                                "smollm3", "cohere")},
}


def _generic(model: nn.Module, cfg) -> Taps:
    n = getattr(cfg, "num_hidden_layers", None)
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not lists:
        raise ConfigError(f"cannot find the {n} decoder blocks of this {cfg.model_type} model")
    name, blocks = lists[0]
    children = dict(blocks[0].named_children())
    attn = next((c for c in ("self_attn", "attn", "attention", "self_attention") if c in children), "")
    mlp = next((c for c in ("mlp", "feed_forward", "ffn") if c in children), "")
    if attn and isinstance(getattr(children[attn], "v_proj", None), nn.Linear):  # OPT, GPT-J, Phi, most others
        return Taps(name, attn, mlp, f"{attn}.v_proj", _plain_v)
    return Taps(name, attn, mlp)


def taps_for(model: nn.Module, cfg) -> Taps:
    taps = FAMILIES.get(cfg.model_type)
    if taps is not None:
        try:
            model.get_submodule(taps.blocks)
            return taps
        except AttributeError:
            pass
    return _generic(model, cfg)


def _first_tensor(output):
    if isinstance(output, (tuple, list)):
        output = next((o for o in output if isinstance(o, torch.Tensor)), None)
    return output if isinstance(output, torch.Tensor) else None


class Tapper:
    """Context manager: forward hooks on every block (and its attention, MLP, value projection) that append
    each forward's outputs, detached, to lists; always removed on exit. `outputs()` concatenates the
    forwards along the batch axis under the names the probes match: blocks.i, blocks.i.attn, blocks.i.mlp;
    `values()` the v tensors per block (B, T, heads, head_dim)."""

    def __init__(self, model: nn.Module, cfg, taps: Taps):
        self.model, self.cfg, self.taps = model, cfg, taps
        self.blocks = model.get_submodule(taps.blocks)
        self.seen: dict[str, list[torch.Tensor]] = {}
        self._handles: list = []

    def _targets(self):
        for i, block in enumerate(self.blocks):
            yield f"blocks.{i}", block
            for key, path in (("attn", self.taps.attn), ("mlp", self.taps.mlp), ("v", self.taps.value)):
                if path:
                    try:
                        yield f"blocks.{i}.{key}", block.get_submodule(path)
                    except AttributeError:
                        pass

    def _keep(self, name, module, args, output) -> None:
        t = _first_tensor(output)
        if t is not None:
            self.seen.setdefault(name, []).append(t.detach().float().cpu())

    def __enter__(self) -> "Tapper":
        try:
            for name, module in self._targets():
                self._handles.append(module.register_forward_hook(functools.partial(self._keep, name)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        while self._handles:
            self._handles.pop().remove()
        return False

    def outputs(self) -> dict[str, torch.Tensor]:
        return {n: torch.cat(ts) for n, ts in self.seen.items() if not n.endswith(".v")}

    def values(self) -> list[torch.Tensor] | None:
        if self.taps.cut_v is None:
            return None
        out = []
        for i in range(len(self.blocks)):
            ts = self.seen.get(f"blocks.{i}.v")
            if not ts:
                return None
            out.append(self.taps.cut_v(torch.cat(ts), self.cfg))
        return out
