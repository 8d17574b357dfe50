"""rezero (ReZero): x + a·F(x), a learned scalar per block (init 0) shared by attention and MLP; no norms."""
from .base import Scale, register_placement, sublayer


def _setup(block, cfg):
    # One gate per block shared by attention and MLP, as in majumderb/rezero rztx.py (`resweight`).
    block.resweight = Scale(0.0)
    return ()


@register_placement("rezero", [], False, "x + a·F(x), a init 0 (one per block); no norms",
                    "Bachlechner et al. 2020 (ReZero), arXiv 2003.04887; majumderb/rezero", setup=_setup)
def rezero(block, sub, x):
    return x + block.resweight(sublayer(block, sub)(x))
