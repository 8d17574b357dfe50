"""Resource bounds checked before any work: a config whose model or batch cannot fit in this
machine's memory is refused at load with the estimate, instead of failing (or swapping for hours)
at the first allocation. The estimate is deliberately rough (fp32 weights + grads + Adam's two
moments, and the activations a backward keeps) and only refuses what is clearly impossible.
"""
from __future__ import annotations

import os

from .schema import RunConfig

BYTES_PER_PARAM = 16  # weight, gradient, two Adam moments (fp32)


def estimate_params(cfg: RunConfig) -> int:
    m = cfg.model
    vocab = m.vocab_size or (cfg.data.bpe_vocab_size if cfg.data.tokenizer == "bpe" else 256)
    per_block = 4 * m.d_model ** 2 + 2 * int(m.mlp_ratio * m.d_model) * m.d_model
    layers = m.n_layer + m.encoder_layers * (2 if m.encoder_layers else 0)
    return layers * per_block + vocab * m.d_model * (1 if m.tie_embeddings else 2) + m.block_size * m.d_model


def estimate_bytes(cfg: RunConfig) -> int:
    m, t = cfg.model, cfg.train
    rows = t.batch_size * m.block_size
    layers = m.n_layer + m.encoder_layers
    hidden = int(m.mlp_ratio * m.d_model)
    activations = 4 * rows * layers * (12 * m.d_model + 3 * hidden)
    attention = 4 * t.batch_size * m.n_head * m.block_size ** 2 * layers * 3  # explicit attention / probes
    return estimate_params(cfg) * BYTES_PER_PARAM + activations + attention


def machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GiB"


def _fits_in_memory(cfg: RunConfig) -> str | None:
    total = machine_memory()
    need = estimate_bytes(cfg)
    if cfg.train.device == "cuda" or not total or need <= 0.8 * total:
        return None
    return (f"this run needs about {_gib(need)} of memory ({estimate_params(cfg):,} parameters x {BYTES_PER_PARAM} "
            f"bytes + activations of train.batch_size={cfg.train.batch_size} x model.block_size={cfg.model.block_size}) "
            f"but the machine has {_gib(total)}; shrink model.d_model / model.n_layer / train.batch_size")


_fits_in_memory.training_only = True  # a saved run is still sampled or reported on a smaller machine
