"""build_model: a ModelConfig -> the plain nn.Module it describes (GPT, NGPT or EncoderDecoder)."""
from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .encdec import EncoderDecoder
from .gpt import GPT
from .ngpt import NGPT


def build_model(cfg: ModelConfig) -> nn.Module:
    """A plain nn.Module from a ModelConfig (vocab_size must be known)."""
    if cfg.encoder_layers:
        return EncoderDecoder(cfg)
    return NGPT(cfg) if cfg.arch == "ngpt" else GPT(cfg)
