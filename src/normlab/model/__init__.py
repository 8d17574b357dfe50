"""Model layer: attention, MLP, blocks, placements and the GPT."""
from .gpt import GPT, Block, build_model
from .placement import PLACEMENTS, Placement, has_final_norm, register_placement

__all__ = ["GPT", "Block", "PLACEMENTS", "Placement", "build_model", "has_final_norm", "register_placement"]
