"""normlab: a PyTorch laboratory for normalization in transformers.

    import normlab as nl
    cfg = nl.load_config("prepost", overrides=["model.norm.placement=post"])
    model = nl.build_model(cfg.model)     # vocab_size is filled from the tokenizer by train()
    summary = nl.train(cfg)               # writes runs/<name>/ and returns summary.json's dict
"""
from .version import __version__  # noqa: E402

from .config import ConfigError, RunConfig, load_config  # noqa: E402
from .model import GPT, PLACEMENTS, build_model  # noqa: E402
from .norms import NORMS, build_norm, register_norm  # noqa: E402
from .probes import PROBES, Recorder, probe_model  # noqa: E402
from .training import train  # noqa: E402

__all__ = ["ConfigError", "GPT", "NORMS", "PLACEMENTS", "PROBES", "Recorder", "RunConfig", "build_model", "build_norm",
           "load_config", "probe_model", "register_norm", "train", "__version__"]
