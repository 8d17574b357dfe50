"""Optimizers: the plain path's torch optimizers (MuonAdamW against torch.optim.Muon + AdamW) and the stacked
engine's (one update of E members against E separate torch optimizers, step by step, state included)."""
import pytest
import torch

import normlab as nl
from normlab.training.muon import muon_params
from normlab.training.optim import build_optimizer, optimizer_state_by_name, param_groups
from normlab.training.stacked import stack_models
from normlab.training.stacked_optim import build_stacked_optimizer

from debugmodels import debug_config


def _model(seed, *overrides):
    cfg = debug_config(f"train.seed={seed}", *overrides, vocab=27)
    torch.manual_seed(seed)
    return nl.build_model(cfg.model), cfg


def _grads(model, gen):
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)


def test_muon_params_are_the_blocks_matrices():
    model, _ = _model(0)
    hidden = muon_params(model)
    names = {n for n, p in model.named_parameters() if id(p) in hidden}
    assert names and all(n.startswith("blocks.") and n.endswith(".weight") for n in names)
    assert all(p.dim() == 2 for n, p in model.named_parameters() if n in names)
    assert not any("lm_head" in n or "wte" in n or "wpe" in n or "norm" in n for n in names)


def test_muon_adamw_is_torch_muon_on_the_matrices_and_torch_adamw_on_the_rest():
    model, cfg = _model(0, "train.optimizer=muon", "train.weight_decay=0.1", "train.lr=0.01")
    twin, _ = _model(0)
    twin.load_state_dict(model.state_dict())
    ours = build_optimizer(model, cfg.train)
    hidden = muon_params(twin)
    names = [n for n, p in twin.named_parameters() if id(p) in hidden]
    decayed = {id(p) for p in param_groups(twin, 1.0)[0]["params"]}
    decay = {n for n, p in twin.named_parameters() if id(p) in decayed}
    params = dict(twin.named_parameters())
    muon = torch.optim.Muon([params[n] for n in names], lr=0.01, weight_decay=0.1, momentum=0.95, nesterov=True,
                            adjust_lr_fn="match_rms_adamw")
    rest = [n for n in params if n not in names]
    adamw = torch.optim.AdamW([{"params": [params[n] for n in rest if n in decay], "weight_decay": 0.1},
                               {"params": [params[n] for n in rest if n not in decay], "weight_decay": 0.0}],
                              lr=0.01, betas=tuple(cfg.train.betas), eps=cfg.train.adam_eps, fused=True)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(4):
        _grads(model, g1), _grads(twin, g2)
        ours.step(), muon.step(), adamw.step()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(a, b), name
    state = optimizer_state_by_name(model, ours)
    assert set(state[names[0]]) == {"momentum_buffer"} and set(state["wte.weight"]) == {"step", "exp_avg", "exp_avg_sq"}
    # a state_dict round trip keeps the inner AdamW pointed at the live state
    ours.load_state_dict(ours.state_dict())
    _grads(model, g1), _grads(twin, g2)
    ours.step(), muon.step(), adamw.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


CASES = {
    "adam": ["train.optimizer=adam"],
    "adamw": ["train.optimizer=adamw", "train.weight_decay=0.1"],
    "sgd": ["train.optimizer=sgd", "train.momentum=0.9", "train.weight_decay=0.01"],
    "sgd-nesterov": ["train.optimizer=sgd", "train.momentum=0.8", "train.nesterov=true"],
    "sgd-plain": ["train.optimizer=sgd", "train.momentum=0"],
    "muon": ["train.optimizer=muon", "train.weight_decay=0.1"],
    "muon-original": ["train.optimizer=muon", "train.muon_nesterov=false", "train.muon_lr_adjust=original"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_stacked_optimizer_equals_separate_torch_optimizers_step_by_step(case):
    torch.set_num_threads(1)
    lrs = [0.01, 0.003, 0.02]
    built = [_model(k, *CASES[case], f"train.lr={lrs[k]}") for k in range(3)]
    models, trains = [m for m, _ in built], [c.train for _, c in built]
    flat = stack_models(models, "cpu")[1]
    stacked = build_stacked_optimizer(flat, trains, "cpu", models[0])
    plain = [build_optimizer(m, t) for m, t in zip(models, trains)]
    gen = torch.Generator().manual_seed(7)
    for step in range(5):
        active = torch.tensor([1.0, 0.0 if step == 3 else 1.0, 1.0])   # member 1 sits out step 3
        grad = torch.randn(flat.E, flat.P, generator=gen)
        before = {n: flat.member(flat.data, 1, n).clone() for n in flat.spans}
        state_before = stacked.state_of(1)
        stacked.step(grad, torch.tensor(lrs), active)
        for k, (m, opt) in enumerate(zip(models, plain)):
            if not active[k]:
                continue
            for name, p in m.named_parameters():
                p.grad = flat.member(grad, k, name).clone()
            opt.step()
        if step == 3:   # an inactive member changes neither weights nor state
            assert all(torch.equal(before[n], flat.member(flat.data, 1, n)) for n in flat.spans)
            assert _same_state(state_before, stacked.state_of(1), exact=True)
    # Muon orthogonalizes in bfloat16: an update 1 ulp apart in float32 (a lerp with a per-member weight column)
    # can round one element to the next bfloat16, lr x 0.2 sqrt(64) x 2^-9 ~ 3e-5 (measured 1.6e-5 once in 5 steps)
    atol = 1e-4 if case.startswith("muon") else 1e-6
    for k, m in enumerate(models):
        for name, p in m.named_parameters():
            torch.testing.assert_close(flat.member(flat.data, k, name), p.detach(), rtol=1e-5, atol=atol,
                                       msg=f"{case} member {k} {name}")
        assert _same_state(stacked.state_of(k), optimizer_state_by_name(m, plain[k]))


def _same_state(a: dict, b: dict, exact: bool = False) -> bool:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for key in a[name]:
            x, y = a[name][key].float(), b[name][key].float()
            if exact:
                assert torch.equal(x, y), (name, key)
            else:
                torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=f"{name} {key}")
    return True


def test_sgd_nesterov_without_momentum_is_refused():
    with pytest.raises(nl.ConfigError, match="nesterov"):
        nl.load_config("debug", ["train.optimizer=sgd", "train.momentum=0", "train.nesterov=true"])
