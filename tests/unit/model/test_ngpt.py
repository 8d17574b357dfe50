"""nGPT: formulas against hand-written float64 math, renormalization, eigen LRs, causality, refusals."""
import math

import pytest
import torch

import normlab as nl
from normlab.config import ConfigError, load_config
from normlab.model import build_model
from normlab.model.mha import ScaledVector
from normlab.model.ngpt import NGPT, hypersphere_step
from normlab.rundir import latest_checkpoint

from causality import assert_causal  # tests/unit/causality.py
from debugmodels import debug_model_config

NGPT_ARGS = ["model.arch=ngpt", "model.norm.placement=none", "model.pos=rope", "model.mlp=swiglu"]


def _cfg(*overrides):
    return debug_model_config(*NGPT_ARGS, *overrides)


def _unit_norm_weights(model):
    return {name: m for name, m in model.named_modules() if getattr(m, "unit_norm_dim", None) is not None}


def test_every_matrix_is_tagged_for_renormalization():
    model = build_model(_cfg())
    tagged = set(_unit_norm_weights(model))
    matrices = {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.dim() == 2}
    assert tagged == matrices and "wte" in tagged and "lm_head" in tagged
    dims = {n: m.unit_norm_dim for n, m in _unit_norm_weights(model).items()}
    # the d_model axis: rows of matrices reading the residual, columns of those writing to it
    assert dims["blocks.0.attn.q"] == 1 and dims["blocks.0.attn.proj"] == 0 and dims["blocks.0.mlp.proj"] == 0


def test_after_training_steps_every_matrix_has_unit_norm_along_d_model(tiny, tmp_path):
    nl.train(tiny("name=n", *NGPT_ARGS, "train.steps=3", "train.lr=0.05", "train.threads=1"))
    from safetensors.torch import load_file

    tensors = load_file(str(latest_checkpoint(tmp_path / "n") / "model.safetensors"))
    cfg = load_config("debug", ["model.vocab_size=27", *NGPT_ARGS]).model
    model = build_model(cfg)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    for name, module in _unit_norm_weights(model).items():
        w = tensors[f"{name}.weight"].double()
        norms = w.norm(dim=module.unit_norm_dim)
        assert w.shape[module.unit_norm_dim] == 16, name      # the d_model axis (debug d_model = 16)
        torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-6, msg=name)
        assert not torch.allclose(w.float(), before[f"{name}.weight"]), f"{name} did not train"


def test_post_step_renormalizes_after_an_optimizer_step():
    model = build_model(_cfg())
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randint(0, 11, (2, 8))).square().mean().backward()
    opt.step()
    w = model.blocks[0].mlp.proj.weight
    assert (w.norm(dim=0) - 1).abs().max() > 1e-3          # the step moved it off the sphere
    model.post_step()
    torch.testing.assert_close(w.norm(dim=0), torch.ones(w.shape[1]), rtol=0, atol=1e-6)


def test_hypersphere_step_formula():
    h, f = torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(2, 3, 8, dtype=torch.float64)
    alpha = torch.randn(8, dtype=torch.float64)
    a = h / torch.sqrt((h * h).sum(-1, keepdim=True))
    b = f / torch.sqrt((f * f).sum(-1, keepdim=True))
    r = a + alpha.abs() * (b - a)
    expected = r / torch.sqrt((r * r).sum(-1, keepdim=True))
    torch.testing.assert_close(hypersphere_step(h, f, alpha), expected, rtol=1e-12, atol=1e-12)


def test_eigen_lr_scaling_formula_and_its_effect_on_adam():
    """Stored at s, used as p * (init / s): starts at init, and Adam moves the used value by ~lr * init / s."""
    init, scaling, lr = 0.05, 1 / math.sqrt(64), 1e-3
    v = ScaledVector(4, init, scaling)
    assert torch.allclose(v.weight, torch.full((4,), scaling))
    torch.testing.assert_close(v(), torch.full((4,), init))
    opt = torch.optim.Adam(v.parameters(), lr=lr)
    (-v().sum()).backward()
    opt.step()
    # Adam's first step is lr * sign(grad) in stored units, i.e. lr * init / scaling in used units
    torch.testing.assert_close(v() - init, torch.full((4,), lr * init / scaling), rtol=1e-4, atol=0)


def test_eigen_lrs_probe_reads_effective_alphas_per_layer():
    """The ngpt_eigen_lrs probe (it used to call a method no model had, and recorded nothing)."""
    import normlab as nl

    model = build_model(_cfg("model.n_layer=3", "model.d_model=16"))
    with torch.no_grad():
        model.blocks[2].alpha_mlp.weight.fill_(-0.5)
    out = nl.probe_model(model, torch.randint(0, 11, (2, 6)), ["ngpt_eigen_lrs"])["ngpt_eigen_lrs"]
    scalars = {k: v for k, v in out.items() if not k.startswith("vec/")}
    assert set(scalars) == {f"alpha_{s}/layer{i}" for s in ("attn", "mlp") for i in range(3)}
    assert [scalars[f"alpha_attn/layer{i}"] for i in range(3)] == pytest.approx([0.05] * 3)
    assert scalars["alpha_mlp/layer2"] == pytest.approx(0.5 * 0.05 / (1 / 4))   # |p| * init / base_scale, base 1/sqrt(16)
    assert nl.probe_model(build_model(load_config("debug", ["model.vocab_size=11"]).model),
                          torch.randint(0, 11, (2, 6)), ["ngpt_eigen_lrs"])["ngpt_eigen_lrs"] == {}


def _rope(x, T):
    D = x.shape[-1]
    inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def test_ngpt_model_matches_hand_written_math():
    """The whole forward of a 1-layer nGPT in float64, written out from the paper / NVIDIA/ngpt."""
    cfg = _cfg("model.n_layer=1", "model.d_model=8", "model.n_head=2", "model.mlp_ratio=3")
    model = build_model(cfg).double()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.mul_(1 + 0.3 * torch.randn_like(p))       # move every scale off its init
    idx = torch.randint(0, 11, (2, 5))
    blk, B, T, C, H, D = model.blocks[0], 2, 5, 8, 2, 4
    unit = lambda x: x / torch.sqrt((x * x).sum(-1, keepdim=True))  # noqa: E731
    bs = 1 / math.sqrt(C)
    h = model.wte.weight[idx]
    q = (h @ blk.attn.q.weight.T).view(B, T, H, D).transpose(1, 2)
    k, v = (h @ blk.attn.kv.weight.T).split(C, -1)
    k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (k, v))
    s_qk = (blk.attn.s_qk.weight * (1.0 / bs)).view(1, H, 1, D)
    q, k = s_qk * unit(_rope(q, T)), s_qk * unit(_rope(k, T))
    scores = (q @ k.transpose(-1, -2)) * math.sqrt(D)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    att = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, C) @ blk.attn.proj.weight.T
    a_A = (blk.alpha_attn.weight * (0.05 / bs)).abs()
    h = unit(unit(h) + a_A * (unit(att) - unit(h)))
    uv = (h @ blk.mlp.fc.weight.T) * (blk.mlp.s_uv.weight * math.sqrt(C))
    u, g = uv.chunk(2, -1)
    mlp = (u * g * torch.sigmoid(g)) @ blk.mlp.proj.weight.T
    a_M = (blk.alpha_mlp.weight * (0.05 / bs)).abs()
    h = unit(unit(h) + a_M * (unit(mlp) - unit(h)))
    logits = (h @ model.lm_head.weight.T) * (model.s_z.weight * (1.0 / bs))
    # 1e-6, not 1e-12: Rotary keeps its cos/sin tables in float32 even in a float64 model
    torch.testing.assert_close(model(idx), logits, rtol=1e-6, atol=1e-6)


def test_ngpt_is_causal():
    model = build_model(_cfg()).eval()
    assert_causal(model, vocab_size=11)


def test_ngpt_is_deterministic_and_trains_bit_identically(tiny, tmp_path):
    torch.manual_seed(5)
    a = build_model(_cfg())
    torch.manual_seed(5)
    b = build_model(_cfg())
    idx = torch.randint(0, 11, (2, 9))
    assert isinstance(a, NGPT) and torch.equal(a(idx), b(idx))
    s1 = nl.train(tiny("name=a", *NGPT_ARGS, "train.steps=6", "train.threads=1"))
    s2 = nl.train(tiny("name=b", *NGPT_ARGS, "train.steps=6", "train.threads=1"))
    assert s1["val_loss"] == s2["val_loss"] and s1["final_train_loss"] == s2["final_train_loss"]


@pytest.mark.parametrize("override,message", [
    ("model.norm.placement=pre", "set model.norm.placement=none (got 'pre')"),
    ("model.norm.final=always", "model.arch=ngpt has no final norm"),
    ("model.attn.qk_norm=true", "already normalizes q and k"),
    ("model.attn.logit_clamp=30", "not supported with it"),
    ("model.pos=learned", "set model.pos=rope (got 'learned')"),
    ("model.tie_embeddings=true", "set model.tie_embeddings=false"),
    ("model.bias=true", "has no biases"),
    ("train.weight_decay=0.1", "trains without weight decay"),
    ("train.warmup_steps=10", "set train.warmup_steps=0 (got 10)"),
    ("model.resid_init_scale=0.01", "renormalized at build"),
    ("model.ngpt.alpha_init=0", "is out of range; allowed: (0, 10]"),
])
def test_ngpt_config_refusals_say_why(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("debug", [*NGPT_ARGS, override])
    assert message in str(err.value)


def test_ngpt_experiment_variants_validate():
    from normlab.experiments import expand, load_experiment

    planned = expand(load_experiment("ngpt"))
    archs = {p.variant: (p.cfg.model.arch, p.cfg.model.encoder_layers, p.cfg.data.task) for p in planned}
    assert archs["gpt"] == ("gpt", 0, "lm") and archs["ngpt"] == ("ngpt", 0, "lm")
    assert archs["encdec"] == ("gpt", 2, "reverse") and archs["encdec_ngpt"] == ("ngpt", 2, "reverse")
