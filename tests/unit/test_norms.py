"""Each norm kind against its formula written out by hand (float64), plus a contract over NORMS."""
import pytest
import torch

from normlab.config import NormConfig
from normlab.model import PLACEMENTS
from normlab.norms import NORMS, build_norm

X = torch.randn(2, 3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # fixed, not import-order dependent


def _with_params(kind, **kw):
    norm = build_norm(NormConfig(kind=kind, **kw), 8).double()
    with torch.no_grad():
        for p in norm.parameters():
            p.copy_(torch.randn_like(p))
    return norm


def test_layernorm_formula():
    norm = _with_params("layernorm", bias=True, eps=1e-5)
    mean = X.mean(-1, keepdim=True)
    var = ((X - mean) ** 2).mean(-1, keepdim=True)
    expected = norm.weight * (X - mean) / torch.sqrt(var + 1e-5) + norm.bias
    torch.testing.assert_close(norm(X), expected)


def test_rmsnorm_formula():
    norm = _with_params("rmsnorm", eps=1e-6)
    expected = norm.weight * X / torch.sqrt((X ** 2).mean(-1, keepdim=True) + 1e-6)
    # rms_normalize computes in float32 by design (HF convention), so float32 tolerances apply
    torch.testing.assert_close(norm(X), expected, rtol=1e-6, atol=1e-6)


def test_rmsnorm_without_gain_has_no_parameters():
    norm = build_norm(NormConfig(kind="rmsnorm", affine=False), 8)
    assert sum(p.numel() for p in norm.parameters()) == 0
    y = norm(X.float())
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(2, 3), atol=1e-4, rtol=0)


def test_identity_formula():
    assert torch.equal(build_norm(NormConfig(kind="identity"), 8)(X), X)


@pytest.mark.parametrize("kind", sorted(NORMS))
def test_norm_contract(kind):
    norm = build_norm(NormConfig(kind=kind), 16)
    x = torch.randn(2, 5, 16, requires_grad=True)
    y = norm(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    y.square().sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    clone = build_norm(NormConfig(kind=kind), 16)
    clone.load_state_dict(norm.state_dict())
    torch.testing.assert_close(clone(x), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(norm(x.bfloat16())).all()


def test_registering_twice_is_an_error():
    from normlab.norms import register_norm

    with pytest.raises(KeyError, match="registered twice"):
        register_norm("rmsnorm")(type("Dup", (torch.nn.Module,), {}))


def test_every_placement_documents_itself():
    for p in PLACEMENTS.values():
        assert p.formula and p.reference
