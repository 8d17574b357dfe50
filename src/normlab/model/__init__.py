"""Model layer: attention, MLP, blocks, placements, the validity matrix and the GPT."""
from .gpt import GPT, Block, build_model
from .placement import PLACEMENTS, Placement, has_final_norm, register_placement
from .validity import kind_is_used, pair_reason, valid_pairs

__all__ = ["GPT", "Block", "PLACEMENTS", "Placement", "build_model", "has_final_norm", "kind_is_used",
           "pair_reason", "register_placement", "valid_pairs"]
