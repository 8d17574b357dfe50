"""A debug GPT in float64 with large random weights, so that attention and activations are far from uniform:
what the probe tests compute their formulas on (test_frontier_probes, test_sink_probes)."""
import torch

from normlab.config import load_config
from normlab.model import build_model

V, B, T = 11, 2, 8


def sharp_model(*overrides, std=0.5):
    model = build_model(load_config("debug", [f"model.vocab_size={V}", *overrides]).model).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, std, generator=torch.Generator().manual_seed(p.numel()))
    return model
