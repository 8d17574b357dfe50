import pytest
import torch

from normlab.config import load_config
from normlab.model import build_model

from debugmodels import debug_model_config


@pytest.mark.parametrize("placement,expected", [("pre", 25_968), ("post", 25_952), ("none", 25_696)])
def test_seed_003_parameter_counts(placement, expected):
    cfg = load_config("prepost", [f"model.norm.placement={placement}", "model.vocab_size=27"]).model
    assert build_model(cfg).num_params() == expected


@pytest.mark.parametrize("option", ["model.attn.logit_clamp=30", "model.attn.logit_softcap=50",
                                    "model.attn.qk_norm=true", "model.out_logit_softcap=30"])
def test_causality_with_attention_options(option):
    model = build_model(debug_model_config(option)).eval()
    idx = torch.randint(0, 11, (1, 10))
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 3) % 11
    torch.testing.assert_close(model(changed)[:, :6], model(idx)[:, :6], rtol=0, atol=1e-6)


def test_explicit_attention_matches_fused_when_clamp_is_inactive():
    torch.manual_seed(1)
    fused = build_model(debug_model_config())
    torch.manual_seed(1)
    clamped = build_model(debug_model_config("model.attn.logit_clamp=1e6"))
    idx = torch.randint(0, 11, (2, 16))
    torch.testing.assert_close(clamped(idx), fused(idx), rtol=1e-5, atol=1e-5)


def test_clamp_bounds_the_logits():
    from normlab.model.attention import attention_logits_transform

    s = torch.tensor([-100.0, -5.0, 0.0, 5.0, 100.0])
    assert attention_logits_transform(s, 30, 0).tolist() == [-30.0, -5.0, 0.0, 5.0, 30.0]
    capped = attention_logits_transform(s, 0, 50)
    torch.testing.assert_close(capped, 50 * torch.tanh(s / 50))


def test_build_is_deterministic_under_a_seed():
    torch.manual_seed(3)
    a = build_model(debug_model_config())
    torch.manual_seed(3)
    b = build_model(debug_model_config())
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_init_scales_residual_projections():
    cfg = debug_model_config("model.init_std=0.1", "model.resid_init_scale=0.01", "model.d_model=64", "model.n_layer=1")
    model = build_model(cfg)
    assert abs(model.blocks[0].mlp.proj.weight.std().item() - 0.001) < 3e-4
    assert abs(model.blocks[0].mlp.fc.weight.std().item() - 0.1) < 0.01


def test_tied_embeddings_share_storage_and_count_once():
    tied = build_model(debug_model_config("model.tie_embeddings=true"))
    untied = build_model(debug_model_config())
    assert tied.lm_head.weight is tied.wte.weight
    assert untied.num_params() - tied.num_params() == 11 * 16


def test_final_norm_override():
    assert build_model(debug_model_config("model.norm.placement=none", "model.norm.final=always")).norm_final is not None
    assert build_model(debug_model_config("model.norm.placement=pre", "model.norm.final=never")).norm_final is None


def test_too_long_input_is_a_clear_error():
    model = build_model(debug_model_config())
    with pytest.raises(ValueError, match="exceeds model.block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("mlp", ["relu", "gelu", "swiglu", "relu2"])
def test_mlp_kinds_run(mlp):
    model = build_model(debug_model_config(f"model.mlp={mlp}"))
    assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 11)
