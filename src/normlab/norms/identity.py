"""identity: no normalization. The validity matrix allows it only with placements that have no
norm slots (none, rezero): in a slot it would only rename placement=none (or, in deepnorm, leave
alpha * x unnormalized)."""
from torch import nn

from .base import register_norm


@register_norm("identity")
class IdentityNorm(nn.Identity):
    """y = x. No parameters."""

    normalizes = False

    def __init__(self, dim, cfg, role=""):
        super().__init__()
