"""One stack across placements (training/stacked_mix.py): a member of a mixed stack computes the bits a stack
of its own placement computes, and its run directory holds what a plain run of it holds."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import normlab as nl
from normlab.model.placements import PLACEMENTS
from normlab.model.placements.base import slot_formula
from normlab.rundir import latest_checkpoint, read_metrics
from normlab.training import stacked_mix
from normlab.training.stacked import stack_models
from normlab.training.stacked_loop import stack_key, train_stacked

from debugmodels import run_config

GENERIC = sorted(n for n, p in PLACEMENTS.items() if p.generic)


def test_the_generic_placements_are_the_ones_slot_formula_computes():
    assert GENERIC == ["none", "peri", "post", "pre", "reorder"]
    for name in GENERIC:
        cfg = nl.load_config("debug", ["model.vocab_size=11", f"model.norm.placement={name}"]).model
        torch.manual_seed(0)
        model = nl.build_model(cfg).double()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(2, 5, cfg.d_model, dtype=torch.float64)
        for block in model.blocks:
            for sub in ("attn", "mlp"):
                assert torch.equal(block.placement.apply(block, sub, x), slot_formula(block, sub, x)), (name, sub)
    # a placement with hooks or other slots cannot declare itself generic
    with pytest.raises(ValueError, match="generic"):
        from normlab.model.placements.base import register_placement
        register_placement("x-generic-test", ["in", "gate"], True, "", "", generic=True)(lambda b, s, x: x)


def test_generic_placements_share_a_stack_key_only_when_asked():
    on = "train.stack_placements=true"
    key = {p: stack_key(nl.load_config("prepost", [f"model.norm.placement={p}", on])) for p in
           ("pre", "post", "none", "peri", "reorder", "mixln", "deepnorm")}
    assert len({key[p] for p in GENERIC}) == 1
    assert len({key["pre"], key["mixln"], key["deepnorm"]}) == 3
    # the final-norm override is a placement choice too
    final = nl.load_config("prepost", ["model.norm.placement=none", "model.norm.final=always", on])
    assert stack_key(final) == key["pre"]
    # anything else still splits stacks, and so does the default (off)
    layernorm = nl.load_config("prepost", ["model.norm.placement=post", "model.norm.kind=layernorm", on])
    assert stack_key(layernorm) != key["pre"]
    assert stack_key(nl.load_config("prepost", ["model.norm.placement=post"])) != stack_key(nl.load_config("prepost"))


def test_the_runner_plans_one_mixed_stack_when_asked():
    from normlab.experiments import expand, load_experiment
    from normlab.experiments.runner import plan_tasks

    mixed = expand(load_experiment("prepost"), ["train.stack_placements=true"])
    assert sorted(len(t.runs) for t in plan_tasks(mixed)[0]) == [15]
    assert sorted(len(t.runs) for t in plan_tasks(mixed, workers=2)[0]) == [7, 8]
    assert sorted(len(t.runs) for t in plan_tasks(expand(load_experiment("prepost")))[0]) == [5, 5, 5]


def test_the_mixed_stack_gives_each_member_its_own_placements_logits():
    """float64, parameters moved off their init so a slot applied to the wrong member shows."""
    cfgs, models = [], []
    for seed, (placement, final) in enumerate([("pre", "auto"), ("post", "auto"), ("none", "auto"),
                                               ("peri", "auto"), ("reorder", "auto"), ("none", "always")]):
        cfg = nl.load_config("debug", ["model.vocab_size=11", f"model.norm.placement={placement}",
                                       f"model.norm.final={final}", "model.norm.bias=true"])
        torch.manual_seed(seed)
        m = nl.build_model(cfg.model).double()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))
        cfgs.append(cfg)
        models.append(m)
    union = stacked_mix.unified(models, cfgs)
    # every member's own parameters keep their relative order; the union adds only norms
    for m, u in zip(models, union):
        own, theirs = [n for n, _ in m.named_parameters()], [n for n, _ in u.named_parameters()]
        assert [n for n in theirs if n in own] == own and all(".norm_" in n or "norm_final" in n
                                                             for n in theirs if n not in own)
    stacked, _ = stack_models(union, "cpu")
    stacked_mix.mask_slots(stacked, cfgs, "cpu")
    E = len(models)
    x = torch.randint(0, 11, (E, 2, 9))
    out = stacked(x.reshape(E * 2, 9)).reshape(E, 2, 9, 11)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x[k]), rtol=1e-10, atol=1e-10)
    assert not stacked_mix.is_mixed(cfgs[:1]) and stacked_mix.unified(models[:1], cfgs[:1])[0] is models[0]
    mixln = nl.load_config("debug", ["model.vocab_size=11", "model.norm.placement=mixln"])
    with pytest.raises(ValueError, match="generic placements"):
        stacked_mix.unified([models[0], nl.build_model(mixln.model).double()], [cfgs[0], mixln])


STEPS = ["train.steps=60", "train.eval_every=30", "probes.every=30", "train.log_every=10"]
MIX = ["pre", "post", "none", "peri"]


def _losses(run):
    return np.array([m["loss"] for m in read_metrics(run / "metrics.jsonl") if "loss" in m])


def _cfg(tmp_path, name, seed, placement, *extra):
    return run_config("prepost", tmp_path, name, seed, *STEPS, f"model.norm.placement={placement}",
                      "train.grad_clip=0.05", "train.optimizer=adamw", "train.weight_decay=0.1", *extra)


def test_a_member_of_a_mixed_stack_computes_the_bits_of_a_stack_of_its_own(tmp_path):
    """Clipping engaged (grad_clip 0.05) and weight decay on, so the gradient norm and the decay mask take part;
    every record of metrics.jsonl (probes, per-layer gradient norms) and the final weights are compared."""
    torch.set_num_threads(1)
    cfgs = [_cfg(tmp_path, f"mix-{p}", seed, p, "probes.names=[all]") for seed, p in enumerate(MIX)]
    results = train_stacked(cfgs, [tmp_path / c.name for c in cfgs])
    assert {r["status"] for r in results.values()} == {"complete"}
    for seed, p in enumerate(MIX):
        alone = _cfg(tmp_path, f"own-{p}", seed, p, "probes.names=[all]")
        train_stacked([alone], [tmp_path / alone.name])
        mixed_run, own_run = tmp_path / f"mix-{p}", tmp_path / f"own-{p}"
        assert len(_losses(mixed_run)) == 60
        assert (mixed_run / "metrics.jsonl").read_bytes() == (own_run / "metrics.jsonl").read_bytes(), p
        a, b = (load_file(latest_checkpoint(r) / "model.safetensors") for r in (mixed_run, own_run))
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a), p   # its own names only
        stacked = json.loads((mixed_run / "summary.json").read_text())["stacked"]
        assert stacked["members"] == 4


def test_a_mixed_stack_resumes_alone_and_a_member_leaving_restacks_the_rest(tmp_path, monkeypatch):
    """A mixed member's checkpoint is its own placement's (it resumes on the plain path); after a member
    diverges the rest (two placements left) go on bit for bit."""
    from normlab.training import stacked_loop

    real = stacked_loop.Engine.step

    def step(self, step, live, after_backward):
        if step == 7 and self.flat.E == 3:   # the post member blows up
            self.flat.data[self.rows[1], :50] = float("nan")
        return real(self, step, live, after_backward)
    monkeypatch.setattr(stacked_loop.Engine, "step", step)
    cfgs = [_cfg(tmp_path, f"m{k}-{p}", k, p) for k, p in enumerate(["pre", "post", "none"])]
    results = train_stacked(cfgs, [tmp_path / c.name for c in cfgs])
    monkeypatch.setattr(stacked_loop.Engine, "step", real)
    assert results["m1-post"]["status"] == "diverged"
    for k, p in ((0, "pre"), (2, "none")):
        own = _cfg(tmp_path, f"own{k}-{p}", k, p)
        train_stacked([own], [tmp_path / own.name])
        assert np.array_equal(_losses(tmp_path / f"m{k}-{p}"), _losses(tmp_path / own.name))
    # the none member's checkpoint loads into a plain none model: nothing of the union in it
    state = load_file(latest_checkpoint(tmp_path / "m2-none") / "model.safetensors")
    assert not any("norm" in n for n in state)
