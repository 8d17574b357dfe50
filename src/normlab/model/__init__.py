"""Model layer: attention, MLP, blocks, placements, the validity matrix, GPT, nGPT and the encoder-decoder."""
from .encdec import EncoderDecoder, inference
from .build import build_model
from .gpt import GPT, Block
from .ngpt import NGPT
from .placements import PLACEMENTS, Placement, has_final_norm, register_placement
from .validity import kind_is_used, pair_reason, valid_pairs

__all__ = ["GPT", "NGPT", "Block", "EncoderDecoder", "inference", "PLACEMENTS", "Placement", "build_model",
           "has_final_norm", "kind_is_used", "pair_reason", "register_placement", "valid_pairs"]
