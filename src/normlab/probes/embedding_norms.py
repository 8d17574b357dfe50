"""embedding_norms: L2 norm of each row of the input embeddings and of an untied output head.

nGPT (Loshchilov et al. 2024, arXiv 2410.01131) keeps these rows on the unit sphere; seed 002 compares
their distributions against a Pre-LN GPT.
"""
from __future__ import annotations

from torch import nn

from .base import Figure, Probe, register_probe
from .recorder import short_name


@register_probe("embedding_norms")
class EmbeddingNorms(Probe):
    """row norms ||E_i|| of every nn.Embedding and of an untied lm_head: mean/max to metrics, rows to npz."""

    figures = (Figure("histogram", "rows/", "probe_embedding_norms.png", "Embedding row norms",
                      "Distribution of the L2 norm of each token's row in the input embedding and the output head "
                      "at the last probe step (nGPT keeps them at 1)."),)

    def reduce(self, view):
        out, seen = {}, set()
        tables = [(n, m.weight) for n, m in view.model.named_modules() if isinstance(m, nn.Embedding)]
        head = getattr(view.model, "lm_head", None)
        if isinstance(head, nn.Linear):
            tables.append(("lm_head", head.weight))
        for name, w in tables:
            if id(w) in seen:  # a tied head is the embedding itself
                continue
            seen.add(id(w))
            rows = w.detach().double().norm(dim=-1).cpu().numpy()
            key = short_name(name)
            out[f"{key}/mean"], out[f"{key}/max"], out[f"rows/{key}"] = float(rows.mean()), float(rows.max()), rows
        return out
