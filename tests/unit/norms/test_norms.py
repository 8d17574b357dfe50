"""Each norm kind against its formula written out by hand (float64), plus a contract over NORMS."""
import pytest
import torch

from normlab.config import ConfigError, NormConfig, load_config
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
    # statistics in at least float32 (HF convention): float64 input keeps float64, default tolerances
    torch.testing.assert_close(norm(X), expected)


def test_rmsnorm_without_gain_has_no_parameters():
    norm = build_norm(NormConfig(kind="rmsnorm", affine=False), 8)
    assert sum(p.numel() for p in norm.parameters()) == 0
    y = norm(X.float())
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(2, 3), atol=1e-4, rtol=0)


def test_scalenorm_formula():
    norm = _with_params("scalenorm", eps=1e-5)
    expected = norm.scale * X / torch.sqrt((X ** 2).sum(-1, keepdim=True)).clamp(min=1e-5)
    torch.testing.assert_close(norm(X), expected)
    fresh = build_norm(NormConfig(kind="scalenorm"), 8)
    assert fresh.scale.item() == pytest.approx(8 ** 0.5)   # g init sqrt(d)


def test_preaffine_rmsnorm_formula():
    norm = _with_params("preaffine_rmsnorm", eps=1e-6)
    z = norm.pre_scale * X
    expected = norm.weight * z / torch.sqrt((z ** 2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(X), expected)
    fresh = build_norm(NormConfig(kind="preaffine_rmsnorm"), 8)
    assert torch.equal(fresh.pre_scale, torch.ones(8))       # starts as a plain RMSNorm


def test_gated_rmsnorm_formula():
    norm = _with_params("gated_rmsnorm", eps=1e-6, options={"rank": 3})
    y = norm.weight * X / torch.sqrt((X ** 2).mean(-1, keepdim=True) + 1e-6)
    hidden = y @ norm.gate_down.weight.T                      # d -> r
    gate = 1 / (1 + torch.exp(-((hidden * torch.sigmoid(hidden)) @ norm.gate_up.weight.T)))
    torch.testing.assert_close(norm(X), gate * y)
    assert norm.gate_down.weight.shape == (3, 8) and norm.gate_down.bias is None and norm.gate_up.bias is None


def test_gated_rmsnorm_rank_default_and_init_choice():
    from normlab.model import build_model

    default = build_norm(NormConfig(kind="gated_rmsnorm"), 64)
    assert default.gate_down.weight.shape == (16, 64)
    cfg = load_config("debug", ["model.vocab_size=11", "model.d_model=64", "model.norm.kind=gated_rmsnorm"]).model
    torch_init = build_model(cfg).blocks[0].norm_attn_in.gate_down.weight
    assert torch_init.abs().max() <= 1 / 64 ** 0.5 and torch_init.std() > 0.05   # U(+-1/sqrt(64)), kept
    cfg.norm.options = {"init": "model"}
    model_init = build_model(cfg).blocks[0].norm_attn_in.gate_down.weight
    assert abs(model_init.std().item() - 0.02) < 0.005                             # N(0, init_std)


def test_dyt_formula_and_alpha_per_position():
    norm = _with_params("dyt", bias=True)
    torch.testing.assert_close(norm(X), norm.weight * torch.tanh(norm.alpha * X) + norm.bias)
    opts = {"alpha_attn": 0.8, "alpha_mlp": 0.2, "alpha_final": 0.1}
    alphas = {role: build_norm(NormConfig(kind="dyt", options=opts), 8, role).alpha.item()
              for role in ("attn_in", "attn_out", "mlp_in", "mlp_post", "final")}
    assert alphas == pytest.approx({"attn_in": 0.8, "attn_out": 0.8, "mlp_in": 0.2, "mlp_post": 0.2, "final": 0.1})
    assert build_norm(NormConfig(kind="dyt"), 8, "mlp_in").alpha.item() == 0.5   # jiachenzhu/DyT default
    assert build_norm(NormConfig(kind="dyt"), 8).bias is None                   # LLaMA variant: no bias


@pytest.mark.parametrize("kind,options,message", [
    ("dyt", "{alpha_atn: 0.3}", "unknown key model.norm.options.alpha_atn .*did you mean model.norm.options.alpha_attn"),
    ("dyt", "{alpha_mlp: 0}", "alpha_mlp=0.0 must be a positive number"),
    ("gated_rmsnorm", "{rank: 0}", "options.rank=0 must be >= 1"),
    ("gated_rmsnorm", "{init: kaiming}", "init='kaiming' .*choose one of: torch, model"),
    ("rmsnorm", "{rank: 4}", "norm kind 'rmsnorm' takes no options"),
])
def test_bad_norm_options_are_refused_at_config_time(kind, options, message):
    with pytest.raises(ConfigError, match=message):
        load_config("debug", [f"model.norm.kind={kind}", f"model.norm.options={options}"])


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


def test_derf_formula_and_init():
    norm = _with_params("derf", bias=True)
    expected = norm.weight * torch.erf(norm.alpha * X + norm.shift) + norm.bias
    torch.testing.assert_close(norm(X), expected)
    fresh = build_norm(NormConfig(kind="derf", options={"alpha_mlp": 0.2}), 8, "mlp_in")
    assert fresh.alpha.item() == pytest.approx(0.2) and fresh.shift.item() == 0.0   # x-transformers: s init 0
    assert build_norm(NormConfig(kind="derf"), 8).alpha.item() == 0.5 and fresh.bias is None
    assert NORMS["derf"].normalizes is False


def test_seednorm_formula_and_init():
    norm = _with_params("seednorm", eps=1e-6)
    dot = (X * norm.beta).sum(-1, keepdim=True)                       # one scalar per token
    rms = torch.sqrt((X ** 2).mean(-1, keepdim=True) + 1e-6)
    expected = (torch.tanh(dot) * norm.alpha + norm.weight) * X / rms
    torch.testing.assert_close(norm(X), expected)
    fresh = build_norm(NormConfig(kind="seednorm", eps=1e-6), 8).double()
    torch.testing.assert_close(fresh(X), X / rms)                     # b = 0, g = 1: a plain RMSNorm at init
    (fresh(X) * X).sum().backward()
    assert fresh.beta.grad.abs().sum() > 0                            # b learns from the first step


def test_single_scale_rmsnorm_formula():
    norm = _with_params("single_scale_rmsnorm", eps=1e-6)
    assert norm.scale.shape == ()                                     # one scalar, no per-channel gain
    expected = norm.scale * X / torch.sqrt((X ** 2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(X), expected)
    assert build_norm(NormConfig(kind="single_scale_rmsnorm"), 8).scale.item() == 1.0


def test_gated_dyt_formula():
    norm = _with_params("gated_dyt", bias=True, options={"rank": 3, "alpha_attn": 0.8})
    y = norm.weight * torch.tanh(norm.alpha * X) + norm.bias
    hidden = y @ norm.gate_down.weight.T
    gate = 1 / (1 + torch.exp(-((hidden * torch.sigmoid(hidden)) @ norm.gate_up.weight.T)))
    torch.testing.assert_close(norm(X), gate * y)
    fresh = build_norm(NormConfig(kind="gated_dyt", options={"alpha_attn": 0.8}), 8, "attn_in")
    assert fresh.alpha.item() == pytest.approx(0.8) and fresh.gate_up.weight.shape == (8, 16)
    assert NORMS["gated_dyt"].normalizes is False
    with pytest.raises(ConfigError, match="options.rank=0 must be >= 1"):
        load_config("debug", ["model.norm.kind=gated_dyt", "model.norm.options={rank: 0}"])


def _has_linear(kind):
    return any(isinstance(m, torch.nn.Linear) for m in build_norm(NormConfig(kind=kind), 8).modules())


@pytest.mark.parametrize("kind", sorted(k for k in NORMS if not _has_linear(k)))
def test_stacked_parameters_broadcast_per_member(kind):
    """x [E, N, C] with every parameter given a member axis ([E, 1, C], scalars [E, 1, 1]) equals each member alone
    (the stacked-training convention, norms/__init__.py); the fused paths must not be taken."""
    E, N, C = 3, 5, 8
    cfg = NormConfig(kind=kind, bias=True)
    members = [_with_params(kind, bias=True).float() for _ in range(E)]
    x = torch.randn(E, N, C)
    expected = torch.stack([m(x[e]) for e, m in enumerate(members)])
    stacked = {}
    for name, p in members[0].named_parameters():
        tensors = torch.stack([dict(m.named_parameters())[name].detach() for m in members])
        stacked[name] = tensors.view(E, 1, *p.shape) if p.dim() == 1 else tensors.view(E, 1, 1)
    got = torch.func.functional_call(build_norm(cfg, C), stacked, (x,))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind,affine,bias", [("rmsnorm", True, False), ("layernorm", True, True),
                                              ("layernorm", True, False), ("layernorm", False, True)])
@pytest.mark.parametrize("N", [5, 2048])   # below and above kernels.RMS_KERNEL_MIN_NUMEL (E x N x C)
def test_stacked_fused_paths_match_the_formula_and_its_gradients(kind, affine, bias, N):
    """A stack's RMSNorm / LayerNorm with [E, 1, C] parameters (the fused kernel without them, then the members'
    affine) equals the written-out formula per member, forward and every gradient, in float64."""
    from normlab.norms import kernels

    E, C, eps = 3, 16, 1e-5
    assert (E * N * C >= kernels.RMS_KERNEL_MIN_NUMEL) == (N == 2048)
    x = torch.randn(E, N, C, dtype=torch.float64, requires_grad=True)
    w = (1 + 0.3 * torch.randn(E, 1, C, dtype=torch.float64)).requires_grad_()
    b = (0.3 * torch.randn(E, 1, C, dtype=torch.float64)).requires_grad_()
    params = {**({"weight": w} if affine else {}), **({"bias": b} if bias and kind == "layernorm" else {})}
    norm = build_norm(NormConfig(kind=kind, affine=affine, bias=bias, eps=eps), C).double()
    got = torch.func.functional_call(norm, params, (x,))
    if kind == "rmsnorm":
        want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    else:
        mean = x.mean(-1, keepdim=True)
        want = (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + eps)
    want = want * params["weight"] if "weight" in params else want
    want = want + params["bias"] if "bias" in params else want
    up = torch.randn_like(want)
    inputs = (x, *params.values())
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, h in zip(torch.autograd.grad(got, inputs, up), torch.autograd.grad(want, inputs, up)):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-10)
