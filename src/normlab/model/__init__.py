"""Model layer: attention, MLP, blocks, placements and the GPT."""
from .encdec import EncoderDecoder, inference
from .gpt import GPT, Block, build_model
from .ngpt import NGPT
from .placement import PLACEMENTS, Placement, has_final_norm, register_placement

__all__ = ["GPT", "NGPT", "Block", "EncoderDecoder", "inference", "PLACEMENTS", "Placement", "build_model", "has_final_norm", "register_placement"]
