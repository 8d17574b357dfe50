"""normlab: a PyTorch laboratory for normalization in transformers.

    import normlab as nl
    cfg = nl.load_config("prepost", overrides=["model.norm.placement=post"])   # named prepost-base
    summary = nl.train(cfg)               # writes runs/<name>/ with a progress display, returns summary.json's dict
    run = nl.load_run("runs/prepost-base")  # .config .model .tokenizer .summary .metrics .sample(n, prompt)
    model = nl.build_model(cfg.model)     # vocab_size is filled from the tokenizer by train()
"""
from .version import __version__  # noqa: E402

# Resolved on first use (PEP 562): `import normlab.config` (the CLI's parsing, a notebook reading configs) does not
# import torch, the model or the training code.
_LAZY = {"ConfigError": "config", "RunConfig": "config", "load_config": "config", "GPT": "model", "PLACEMENTS": "model",
         "build_model": "model", "NORMS": "norms", "build_norm": "norms", "register_norm": "norms", "PROBES": "probes",
         "Recorder": "probes", "probe_model": "probes", "Run": "api", "load_run": "api", "train": "api"}

__all__ = ["ConfigError", "GPT", "NORMS", "PLACEMENTS", "PROBES", "Recorder", "Run", "RunConfig", "build_model",
           "build_norm", "load_config", "load_run", "probe_model", "register_norm", "train", "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'normlab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
