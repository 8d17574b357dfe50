"""DeepNorm constants and init, Mix-LN's layer split, ReZero at init, and the validity matrix's refusals."""
import pytest
import torch

from normlab.config import ConfigError, load_config
from normlab.model import build_model, pair_reason
from normlab.model.placements.deepnorm import deepnorm_constants
from normlab.model.placements.mixln import mixln_post_layers

from debugmodels import debug_model_config


def test_deepnorm_constants():
    alpha, beta = deepnorm_constants(4)
    assert alpha == pytest.approx(8 ** 0.25) and alpha == pytest.approx(1.681792830507)
    assert beta == pytest.approx(32 ** -0.25) and beta == pytest.approx(0.420448207627)
    assert deepnorm_constants(32)[0] == pytest.approx(2.828427, rel=1e-6)   # mixln fork's hard-coded 2.828


def test_deepnorm_init_scales_v_out_and_mlp_but_not_q_k():
    torch.manual_seed(5)
    post = build_model(debug_model_config("model.norm.placement=post", "model.n_layer=4"))
    torch.manual_seed(5)
    deep = build_model(debug_model_config("model.norm.placement=deepnorm", "model.n_layer=4"))
    beta, C = 32 ** -0.25, 16
    for a, b in zip(post.blocks, deep.blocks):
        torch.testing.assert_close(b.attn.qkv.weight[:2 * C], a.attn.qkv.weight[:2 * C], rtol=0, atol=0)  # q, k
        torch.testing.assert_close(b.attn.qkv.weight[2 * C:], beta * a.attn.qkv.weight[2 * C:])         # v
        torch.testing.assert_close(b.attn.proj.weight, beta * a.attn.proj.weight)
        torch.testing.assert_close(b.mlp.fc.weight, beta * a.mlp.fc.weight)
        torch.testing.assert_close(b.mlp.proj.weight, beta * a.mlp.proj.weight)
    torch.testing.assert_close(deep.wte.weight, post.wte.weight, rtol=0, atol=0)
    assert deep.norm_final is None


def test_deepnorm_residual_formula():
    block = build_model(debug_model_config("model.norm.placement=deepnorm", "model.n_layer=3")).blocks[0].double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    alpha = 6 ** 0.25
    h = block.norm_attn_post(alpha * x + block.attn(x))
    expected = block.norm_mlp_post(alpha * h + block.mlp(h))
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize("n_layer,frac,n_post", [(8, 0.25, 2), (12, 0.25, 3), (24, 0.25, 6), (4, 0.25, 1),
                                                 (3, 0.25, 0), (4, 0.0, 0), (4, 1.0, 4), (5, 0.5, 2)])
def test_mixln_layer_split(n_layer, frac, n_post):
    assert mixln_post_layers(n_layer, frac) == n_post
    model = build_model(debug_model_config("model.norm.placement=mixln", f"model.n_layer={n_layer}",
                             f"model.norm.mixln_post_frac={frac}"))
    post = [hasattr(b, "norm_attn_post") and hasattr(b, "norm_mlp_post") and not hasattr(b, "norm_attn_in")
            for b in model.blocks]
    assert post == [i < n_post for i in range(n_layer)]
    assert all(hasattr(b, "norm_mlp_in") for b in model.blocks[n_post:])
    assert model.norm_final is not None


def test_mixln_blocks_compute_post_then_pre():
    model = build_model(debug_model_config("model.norm.placement=mixln", "model.n_layer=4")).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    b0, b1 = model.blocks[0], model.blocks[1]
    h = b0.norm_attn_post(x + b0.attn(x))
    torch.testing.assert_close(b0(x), b0.norm_mlp_post(h + b0.mlp(h)))
    h = x + b1.attn(b1.norm_attn_in(x))
    torch.testing.assert_close(b1(x), h + b1.mlp(b1.norm_mlp_in(h)))


def test_rezero_is_the_identity_at_init_with_one_gate_per_block():
    model = build_model(debug_model_config("model.norm.placement=rezero", "model.n_layer=3"))
    x = torch.randn(2, 5, 16)
    for block in model.blocks:
        assert torch.equal(block(x), x)
    gates = [n for n, _ in model.named_parameters() if "resweight" in n]
    assert gates == ["blocks.0.resweight.weight", "blocks.1.resweight.weight", "blocks.2.resweight.weight"]
    assert model.norm_final is None and not any("norm" in n for n, _ in model.named_parameters())
    logits = model(torch.randint(0, 11, (2, 5)))
    logits.square().mean().backward()
    assert model.blocks[0].resweight.weight.grad.abs() > 0     # the gate learns although F's grads start at 0


def test_rezero_residual_formula():
    block = build_model(debug_model_config("model.norm.placement=rezero")).blocks[0].double()
    with torch.no_grad():
        block.resweight.weight.fill_(0.3)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    h = x + 0.3 * block.attn(x)
    torch.testing.assert_close(block(x), h + 0.3 * block.mlp(h))


@pytest.mark.parametrize("overrides,message", [
    (["model.norm.kind=dyt", "model.norm.placement=post"],
     "model.norm.kind=dyt with model.norm.placement=post is refused: norm kind dyt does not normalize"),
    (["model.norm.kind=dyt", "model.norm.placement=deepnorm"], "residual sum x \\+ F\\(x\\)"),
    (["model.norm.kind=dyt", "model.norm.placement=mixln"], "use model.norm.placement=lns, peri, pre or reorder"),
    (["model.norm.kind=identity", "model.norm.placement=pre"],
     "norm kind identity in the 'in' slots of placement pre computes nothing"),
    (["model.norm.kind=identity", "model.norm.placement=deepnorm"], "grows by \\(2L\\)\\^¼ per sublayer"),
    (["model.norm.placement=rezero", "model.norm.final=always"],
     "placement=rezero with model.norm.final=always is refused: ReZero is norm-free by design"),
    (["model.norm.placement=mixln", "model.norm.mixln_post_frac=1.5"], "mixln_post_frac=1.5 .* is out of range; allowed: \\[0, 1\\]"),
])
def test_validity_refusals_name_the_reason(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("debug", overrides)


def test_validity_accepts_the_sensible_pairs():
    for kind, placement in [("dyt", "pre"), ("dyt", "peri"), ("identity", "none"), ("identity", "rezero"),
                            ("scalenorm", "deepnorm"), ("gated_rmsnorm", "mixln")]:
        assert pair_reason(kind, placement) is None
        load_config("debug", [f"model.norm.kind={kind}", f"model.norm.placement={placement}"])
    load_config("debug", ["model.norm.kind=dyt", "model.norm.placement=none", "model.norm.final=always"])


def test_reorder_residual_formula_and_final_norm():
    model = build_model(debug_model_config("model.norm.placement=reorder")).double()
    block = model.blocks[0]
    assert not hasattr(block, "norm_attn_in") and model.norm_final is not None   # OLMo 2 keeps its final norm
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    h = x + block.norm_attn_out(block.attn(x))
    torch.testing.assert_close(block(x), h + block.norm_mlp_out(block.mlp(h)))


def test_lns_scales_each_norm_output_by_one_over_sqrt_layer():
    model = build_model(debug_model_config("model.norm.placement=lns", "model.n_layer=4")).double()
    assert [b.lns_scale for b in model.blocks] == pytest.approx([1, 2 ** -0.5, 3 ** -0.5, 0.5])
    block = model.blocks[3]
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    h = x + block.attn(block.norm_attn_in(x) / 2.0)          # l = 4: 1/sqrt(4)
    torch.testing.assert_close(block(x), h + block.mlp(block.norm_mlp_in(h) / 2.0))
    assert model.norm_final is not None


def test_lns_refuses_depth_scaled_init():
    with pytest.raises(ConfigError, match="placement=lns with model.depth_scaled_init=true is refused: LayerNorm Scaling"):
        load_config("debug", ["model.norm.placement=lns", "model.depth_scaled_init=true"])


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_hybrid_block_formula_with_qkv_norms_of_the_models_kind(kind):
    import math

    model = build_model(debug_model_config("model.norm.placement=hybrid", f"model.norm.kind={kind}")).double()
    block = model.blocks[1]
    a = block.attn
    assert type(a.norm_v).kind == kind and a.norm_q.weight.shape == (8,)      # per head (d_model / n_head)
    assert not hasattr(block, "norm_attn_in") and not hasattr(block, "norm_mlp_post")
    assert sorted(n for n, _ in block.named_children() if n.startswith("norm")) == ["norm_attn_post"]
    x = 3 * torch.randn(2, 5, 16, dtype=torch.float64)
    q, k, v = (t.view(2, 5, 2, 8).transpose(1, 2) for t in a.qkv(x).split(16, -1))
    q, k, v = a.norm_q(q), a.norm_k(k), a.norm_v(v)
    s = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    attn = a.proj((torch.softmax(s, -1) @ v).transpose(1, 2).reshape(2, 5, 16))
    y = block.norm_attn_post(x + attn)                                         # N(Y), Y = X + MHA(Nq, Nk, Nv)
    torch.testing.assert_close(block(x), y + block.mlp(y))                     # N(Y) + FFN(N(Y))
    assert model.norm_final is not None and not model.cfg.attn.qkv_norm       # the placement switched it on


def test_hybrid_star_puts_block0_in_pre_norm():
    model = build_model(debug_model_config("model.norm.placement=hybrid", "model.norm.hybrid_first_pre=true", "model.n_layer=3"))
    b0, b1 = model.blocks[0].double(), model.blocks[1]
    assert hasattr(b0, "norm_attn_in") and hasattr(b0, "norm_mlp_in") and b0.attn.norm_v is not None
    assert hasattr(b1, "norm_attn_post") and not hasattr(b1, "norm_attn_in")
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    h = x + b0.attn(b0.norm_attn_in(x))
    torch.testing.assert_close(b0(x), h + b0.mlp(b0.norm_mlp_in(h)))
    with pytest.raises(ConfigError, match="hybrid_first_pre=true only applies to model.norm.placement=hybrid"):
        load_config("debug", ["model.norm.hybrid_first_pre=true"])
    with pytest.raises(ConfigError, match="qk_norm and qkv_norm are exclusive \\(placement hybrid switches"):
        load_config("debug", ["model.norm.placement=hybrid", "model.attn.qk_norm=true"])


@pytest.mark.parametrize("kind", ["derf", "gated_dyt"])
def test_new_squashing_kinds_are_refused_on_the_residual_sum(kind):
    for placement in ("post", "hybrid", "deepnorm"):
        assert "does not normalize" in pair_reason(kind, placement)
    for placement in ("pre", "peri", "reorder", "lns"):
        assert pair_reason(kind, placement) is None
