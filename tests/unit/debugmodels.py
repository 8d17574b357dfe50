"""The one factory for what unit tests compute on: the shipped `debug` config (or another shipped one) with a
small vocabulary, the model it builds, a run config writing under a test's tmp_path, and a float64 'sharp'
model whose attention and activations are far from uniform (what probe formulas are checked on)."""
import torch

from normlab.config import load_config
from normlab.model import build_model

V, B, T = 11, 2, 8


def debug_config(*overrides, vocab=V, base="debug"):
    """The shipped config `base` with vocab_size=vocab, then the overrides (later ones win)."""
    return load_config(base, [f"model.vocab_size={vocab}", *overrides])


def debug_model_config(*overrides, vocab=V):
    return debug_config(*overrides, vocab=vocab).model


def debug_model(*overrides, vocab=V, seed=None):
    """The debug model; with a seed, its init is drawn from torch.manual_seed(seed)."""
    if seed is not None:
        torch.manual_seed(seed)
    return build_model(debug_model_config(*overrides, vocab=vocab))


def run_config(base, tmp_path, name, seed, *overrides):
    """A run of the shipped config `base` named `name`, writing under tmp_path, with train.seed=seed."""
    return load_config(base, [f"out_dir={tmp_path}", f"name={name}", f"train.seed={seed}", *overrides])


def tiny_config(tmp_path, *overrides):
    """The shipped `debug` config writing under tmp_path (a few seconds of CPU at most)."""
    return load_config("debug", [f"out_dir={tmp_path}", *overrides])


def sharp_model(*overrides, std=0.5):
    model = debug_model(*overrides).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, std, generator=torch.Generator().manual_seed(p.numel()))
    return model
