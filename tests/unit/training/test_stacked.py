"""Stacked training: a member of a stack computes what the run computes alone.

Measured tolerances (prepost's MicroGPT, 100 steps, Adam lr 0.01, batch 1; CPU fp32):
- a member of a 3-member stack is bit-identical to a stack of one (every batched op works per member);
- against the plain (unstacked) path, which rounds differently (F.linear vs batched matmuls, the norm
  kernels vs their formula, fused torch Adam vs the flat update): within 1e-4 per step or 3x the plain
  path's own sensitivity to rounding (the same run with only the norm kernels switched off: same math),
  whichever is larger. How far a 1-ulp change grows depends on the placement and on the CPU's kernels:
  on an Intel AVX-512 machine pre and none stayed within 1e-4 and post-norm grew to ~0.3 nats; on an AMD
  EPYC (2026-12-02) stacked vs plain was pre 1.4e-3 (plain vs its own formula form 9.5e-4, both first
  above 1e-6 at step 51), none 7e-7, post 2.6e-6 (self 3.1e-6).
"""
import json
import math
import os
import signal

import numpy as np
import pytest
import torch

import normlab as nl
import normlab.norms.kernels as kernels
from normlab.rundir import latest_checkpoint, read_metrics
from normlab.training import stacked_loop
from normlab.training.loop import WALL_CLOCK_KEYS
from normlab.training.stacked import stack_models
from normlab.training.stacked_loop import stack_key, train_stacked

from debugmodels import run_config

STEPS = ["train.steps=100", "train.eval_every=50", "probes.every=50"]


def _losses(run):
    return np.array([m["loss"] for m in read_metrics(run / "metrics.jsonl") if "loss" in m])


def _cfg(tmp_path, name, seed, *extra):
    return run_config("prepost", tmp_path, name, seed, *STEPS, *extra)


def _stack(tmp_path, prefix, seeds, *extra):
    cfgs = [_cfg(tmp_path, f"{prefix}{s}", s, *extra) for s in seeds]
    return train_stacked(cfgs, [tmp_path / c.name for c in cfgs])


@pytest.mark.parametrize("placement", ["pre", "post", "none"])
def test_member_is_bit_identical_to_a_stack_of_one_and_close_to_the_plain_run(tmp_path, placement):
    torch.set_num_threads(1)
    p = f"model.norm.placement={placement}"
    _stack(tmp_path, "e3-", [0, 1, 2], p)
    _stack(tmp_path, "e1-", [1], p)
    member, alone_stacked = _losses(tmp_path / "e3-1"), _losses(tmp_path / "e1-1")
    assert len(member) == 100 and np.array_equal(member, alone_stacked)
    # every record, probes included (a stack member resumed alone trains as a stack of one: the Ray node-loss
    # test caught per-layer gradient norms 1 ulp apart between E = 1 and E = 2)
    assert (tmp_path / "e3-1" / "metrics.jsonl").read_bytes() == (tmp_path / "e1-1" / "metrics.jsonl").read_bytes()
    nl.train(_cfg(tmp_path, "plain", 1, p))
    diff = np.abs(member - _losses(tmp_path / "plain"))
    assert diff[:10].max() < 1e-6
    # bounded by the plain path's own sensitivity to rounding: the same run with the norms' other form (same math;
    # at this size the plain run takes F.rms_norm, so the other form is the fused kernel, forced on)
    threshold = kernels.RMS_KERNEL_MIN_NUMEL
    kernels.RMS_KERNEL_MIN_NUMEL = 0
    try:
        nl.train(_cfg(tmp_path, "plain-formula", 1, p))
    finally:
        kernels.RMS_KERNEL_MIN_NUMEL = threshold
    bound = max(1e-4, 3 * np.abs(_losses(tmp_path / "plain") - _losses(tmp_path / "plain-formula")).max())
    assert diff.max() < bound, (diff.max(), bound)


def test_a_diverging_member_is_frozen_and_the_others_go_on(tmp_path, monkeypatch):
    real, stacked = stacked_loop.Engine.step, {}

    def step(self, step, live, after_backward):
        if step == 7:   # member 1 blows up (its parameters become NaN), as a divergence would
            self.flat.data[1, :50] = float("nan")
        out = real(self, step, live, after_backward)
        stacked[step] = self.flat.E
        return out
    monkeypatch.setattr(stacked_loop.Engine, "step", step)
    reports = {}
    cfgs = [_cfg(tmp_path, f"s{s}", s) for s in (0, 1, 2)]
    results = train_stacked(cfgs, [tmp_path / c.name for c in cfgs],
                            progress=lambda name, done, total: reports.setdefault(name, []).append(done))
    monkeypatch.setattr(stacked_loop.Engine, "step", real)
    assert results["s1"]["status"] == "diverged" and results["s1"]["diverged_step"] == 7
    # the diverged member (found at the flush after step 9) reports itself through, so the stack's progress (its
    # slowest live member) moves on
    assert reports["s1"][-1] == 100 and reports["s1"][-2] == 9 and reports["s0"][-1] == 100
    # found at the next log flush (step 9); from step 10 on the stack holds the two live members only
    assert stacked[9] == 3 and stacked[10] == 2 and stacked[99] == 2
    assert (tmp_path / "s1" / "forensics.json").exists()
    for seed in (0, 2):
        assert results[f"s{seed}"]["status"] == "complete"
        _stack(tmp_path, f"ref{seed}-", [seed])
        assert np.array_equal(_losses(tmp_path / f"s{seed}"), _losses(tmp_path / f"ref{seed}-{seed}"))


def test_interrupted_stack_resumes_bitwise_and_resumes_unstacked(tmp_path, monkeypatch):
    _stack(tmp_path, "full", [0, 1])

    def interrupt(name, step, total):
        if step == 25 and name.endswith("0"):   # once: a second Ctrl-C would abort without a checkpoint
            os.kill(os.getpid(), signal.SIGINT)
    cfgs = [_cfg(tmp_path, f"cut{s}", s, "train.ckpt_every=20") for s in (0, 1)]
    cut = train_stacked(cfgs, [tmp_path / c.name for c in cfgs], progress=interrupt)
    assert {s["status"] for s in cut.values()} == {"interrupted"}
    assert latest_checkpoint(tmp_path / "cut0").name == "step_000025"
    train_stacked(cfgs, [tmp_path / c.name for c in cfgs])             # resumed stacked
    for s in (0, 1):
        assert np.array_equal(_losses(tmp_path / f"cut{s}"), _losses(tmp_path / f"full{s}"))
        a = (tmp_path / f"cut{s}" / "metrics.jsonl").read_text().splitlines()
        b = (tmp_path / f"full{s}" / "metrics.jsonl").read_text().splitlines()
        assert a == b   # metrics.jsonl byte for byte
        wall = ("name", "stacked", *WALL_CLOCK_KEYS)
        ours, ref = ({k: v for k, v in json.loads((tmp_path / f"{r}{s}" / "summary.json").read_text()).items()
                      if k not in wall} for r in ("cut", "full"))
        assert ours == ref   # the probes' peaks too: over all of training, not since the resume
    # a stacked checkpoint resumes alone (the same single-model format)
    half = _cfg(tmp_path, "half0", 0, "train.ckpt_every=20")
    train_stacked([half, _cfg(tmp_path, "half1", 1, "train.ckpt_every=20")],
                  [tmp_path / "half0", tmp_path / "half1"], progress=interrupt)
    nl.train(half, tmp_path / "half0", resume=True)
    diff = np.abs(_losses(tmp_path / "half0") - _losses(tmp_path / "full0"))
    assert diff[:25].max() == 0 and diff.max() < 1e-4


def _assert_members_match(cfg):
    """Three float64 models of `cfg` (vocab 11), parameters moved off their init so a wrong broadcast or a
    shared parameter shows: the stacked model's member k gives model k's logits."""
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        m = nl.build_model(cfg).double()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))
        models.append(m)
    stacked, _ = stack_models(models, "cpu")
    x = torch.randint(0, 11, (3, 2, 9))
    out = stacked(x.reshape(6, 9)).reshape(3, 2, 9, 11)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x[k]), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", sorted(k for k in nl.NORMS if k != "identity"))
def test_every_norm_kind_stacks(kind):
    """Each kind's forward broadcasts a member axis ([E, 1, C] parameters): the stacked model's member k
    gives model k's logits (float64; parameters moved off their init so a wrong broadcast shows)."""
    cfg = nl.load_config("debug", ["model.vocab_size=11", f"model.norm.kind={kind}", "model.norm.bias=true"]).model
    _assert_members_match(cfg)


def test_stack_keys_group_what_can_share_a_step():
    from normlab.experiments import expand, load_experiment
    from normlab.experiments.runner import plan_tasks

    tasks, _ = plan_tasks(expand(load_experiment("prepost")))
    assert sorted(len(t.runs) for t in tasks) == [5, 5, 5]
    sweep, _ = plan_tasks(expand(load_experiment("lr-sweep")))
    assert sorted(len(t.runs) for t in sweep) == [25] * 7          # a scheme's 5 LRs x 5 seeds share a stack
    assert len(plan_tasks(expand(load_experiment("prepost")), stack=False)[0]) == 15
    ngpt = nl.load_config("ngpt", ["model.arch=ngpt", "model.norm.placement=none", "train.weight_decay=0",
                                   "train.warmup_steps=0"])
    assert stack_key(ngpt) is None and stack_key(nl.load_config("prepost")) == stack_key(
        nl.load_config("prepost", ["train.lr=0.1", "train.seed=3", "model.init_std=0.02"]))
    assert stack_key(nl.load_config("prepost")) != stack_key(nl.load_config("prepost", ["model.n_layer=4"]))


def test_stacks_are_split_only_where_that_ends_the_sweep_sooner():
    from normlab.experiments import expand, load_experiment
    from normlab.experiments.runner import _cost, _makespan, balance, plan_tasks

    prepost = expand(load_experiment("prepost"))                   # 3 placements x 5 seeds: 3 stacks of 5
    # At prepost's size a stack's step is mostly its base (dispatch): a 3 + 2 split pays that base twice, and
    # none (no norms) is the cheaper stack, so on 2 workers the model sees no gain in splitting (measured: a wash,
    # within the +-1-2 s the same plan varies by; RESULTS.md, session 14)
    tasks, _ = plan_tasks(prepost, workers=2)
    assert sorted(len(t.runs) for t in tasks) == [5, 5, 5]
    by_variant = {t.runs[0].variant: _cost(t) for t in tasks}
    assert by_variant["none"] < by_variant["pre"] == by_variant["post"]
    for workers in (1, 3):                                          # nothing to gain: one worker, or one each
        assert sorted(len(t.runs) for t in plan_tasks(prepost, workers=workers)[0]) == [5, 5, 5]
    many, _ = plan_tasks(prepost, workers=8)                        # 8 workers: the costly stacks split
    assert sorted(len(t.runs) for t in many) == [2, 2, 3, 3, 5]
    assert sorted(r.cfg.name for t in many for r in t.runs) == sorted(r.cfg.name for r in prepost)
    assert all(len({r.variant for r in t.runs}) == 1 for t in many)   # a split keeps one shape per stack
    assert _makespan(many, 8) < _makespan(plan_tasks(prepost)[0], 8)
    # never into a lone run: it would train on the plain path, whose rounding differs from a stack's
    two_seeds = expand(load_experiment("prepost"), [], [0, 1])
    assert sorted(len(t.runs) for t in plan_tasks(two_seeds, workers=2)[0]) == [2, 2, 2]
    pre = [r for r in expand(load_experiment("prepost"), [], list(range(10))) if r.variant == "pre"]
    halves, _ = plan_tasks(pre, workers=2)                          # one 10-member stack: both cores, 5 + 5
    assert sorted(len(t.runs) for t in halves) == [5, 5]
    whole, _ = plan_tasks(pre)
    assert _makespan(halves, 2) < _makespan(whole, 2) and balance(whole, 1) == whole
    # wide members cost most of a stack: both of calibration's 5-stacks split, which only pays once both are
    # (splitting one alone leaves the other whole on its worker)
    calibration, _ = plan_tasks(expand(load_experiment("calibration")), workers=2)
    assert sorted(len(t.runs) for t in calibration) == [2, 2, 3, 3]


def test_a_member_counts_for_its_own_steps_in_a_stacks_cost():
    from normlab.experiments import expand, load_experiment
    from normlab.experiments.runner import Task, _cost, step_ms

    runs = expand(load_experiment("prepost"), [], [0, 1, 2])
    pre = [r for r in runs if r.variant == "pre"]
    base, member = step_ms(pre[0].cfg)
    assert _cost(Task(pre)) == pytest.approx(1000 * base + 3000 * member)
    short = expand(load_experiment("prepost"), ["train.steps=10"], [3])[0]
    assert _cost(Task(pre + [short])) == pytest.approx(1000 * base + 3010 * member)   # it leaves at step 10
    assert step_ms(nl.load_config("prepost", ["model.norm.placement=none"]))[0] < base   # no norms: fewer ops
    assert step_ms(nl.load_config("prepost", ["model.d_model=64"]))[1] > member          # wider: more arithmetic


def test_per_member_clipping_and_learning_rates(tmp_path):
    """Members with other clip thresholds and LRs each follow their own run (vs a stack of one)."""
    extra = {0: ["train.grad_clip=0.5", "train.lr=0.003"], 1: ["train.grad_clip=0", "train.lr=0.02"]}
    cfgs = [_cfg(tmp_path, f"m{s}", s, "train.steps=30", *extra[s]) for s in (0, 1)]
    train_stacked(cfgs, [tmp_path / c.name for c in cfgs])
    for s in (0, 1):
        one = _cfg(tmp_path, f"one{s}", s, "train.steps=30", *extra[s])
        train_stacked([one], [tmp_path / one.name])
        assert np.array_equal(_losses(tmp_path / f"m{s}"), _losses(tmp_path / f"one{s}"))
        lrs = [m["lr"] for m in read_metrics(tmp_path / f"m{s}" / "metrics.jsonl") if "lr" in m]
        assert lrs[0] == pytest.approx(float(extra[s][1].split("=")[1])) and math.isclose(lrs[-1], lrs[0] / 30,
                                                                                         rel_tol=1e-9)


@pytest.mark.slow
def test_stacked_model_compiles(tmp_path):
    """train.compile=model compiles the stacked model: same losses as the eager stack (measured 2.4e-7)."""
    def cfgs(prefix, *extra):
        return [nl.load_config("debug", [f"out_dir={tmp_path}", f"name={prefix}{s}", f"train.seed={s}",
                                         "train.steps=20", *extra]) for s in range(2)]
    for prefix, extra in (("c", ["train.compile=model"]), ("e", [])):
        cs = cfgs(prefix, *extra)
        train_stacked(cs, [tmp_path / c.name for c in cs])
    for s in range(2):
        assert np.abs(_losses(tmp_path / f"c{s}") - _losses(tmp_path / f"e{s}")).max() < 1e-5


VARIANTS = [["model.attn.gate=headwise"], ["model.attn.gate=elementwise"], ["model.attn.softmax=softpick"],
            ["model.attn.softmax=sigmoid"], ["model.attn.sink=true"], ["model.attn.qkv_norm=true"],
            ["model.attn.qk_norm=true"], ["model.resid_clip=1"]] + [
    [f"model.norm.placement={p}"] for p in ("post", "peri", "deepnorm", "mixln", "rezero", "reorder", "lns", "hybrid",
                                           "none")]


@pytest.mark.parametrize("extra", VARIANTS, ids=lambda e: e[0].split("model.")[1])
def test_every_attention_option_and_placement_stacks(extra):
    """The stacked model's member k gives model k's logits for every attention option and placement
    (float64, parameters moved off their init so a learned sink logit or gate that is shared shows)."""
    cfg = nl.load_config("debug", ["model.vocab_size=11", *extra]).model
    _assert_members_match(cfg)


def test_independent_weight_decay_is_the_plain_paths(tmp_path):
    """train.weight_decay_mode=independent decays wd * lr_t / lr in the stack as in torch AdamW (wd / lr):
    with wd 0.1 at lr 0.01 the coupled and independent decays differ 100x, so a stack that ignored the mode
    would leave the plain run within steps."""
    torch.set_num_threads(1)
    extra = ["train.steps=30", "train.optimizer=adamw", "train.weight_decay=0.1", "train.weight_decay_mode=independent"]
    _stack(tmp_path, "s", [0], *extra)
    nl.train(_cfg(tmp_path, "plain", 0, *extra))
    coupled = _cfg(tmp_path, "coupled", 0, *extra[:-1])
    nl.train(coupled)
    diff = np.abs(_losses(tmp_path / "s0") - _losses(tmp_path / "plain"))
    assert diff.max() < 1e-4, diff.max()
    assert np.abs(_losses(tmp_path / "coupled") - _losses(tmp_path / "plain")).max() > 100 * max(diff.max(), 1e-7)


def test_qk_clip_trains_alone():
    cfg = nl.load_config("debug", ["train.qk_clip=50"])
    assert stack_key(cfg) is None and "qk_clip" in stacked_loop.unstackable(cfg)


def test_grad_norm_probe_of_a_member_matches_the_plain_run(tmp_path):
    """The stack computes every member's per-layer / per-group / total gradient norms at once (one segmented
    sum over the flat gradient); member k's records equal the grad_norms probe of run k alone."""
    torch.set_num_threads(1)
    extra = ["train.steps=6", "probes.grad_every=1"]
    _stack(tmp_path, "g", [0, 1], *extra)
    nl.train(_cfg(tmp_path, "plain", 1, *extra))

    def norms(run):
        return [{k: v for k, v in m.items() if k.startswith("probe/grad_norms/")}
                for m in read_metrics(run / "metrics.jsonl") if "loss" in m]
    member, plain = norms(tmp_path / "g1"), norms(tmp_path / "plain")
    assert len(member) == 6 and member[0].keys() == plain[0].keys() and len(member[0]) > 3
    for a, b in zip(member[:3], plain[:3]):   # later steps drift with the losses' rounding (1e-6 a step)
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), key


@pytest.mark.parametrize("tied", [False, True])
def test_leaves_take_the_layout_their_module_reads_and_give_the_same_gradients(tied, monkeypatch):
    """A Linear weight's leaf is [E, in, out] and a norm gain's [E, 1, C], strided views of the flat buffer (no
    per-step transpose or view); a weight read in two layouts (the embedding tied to the head) keeps [E, *shape].
    Gradients in the flat buffer are bit-identical to those of the default layout (same memory, same kernels)."""
    import normlab.training.stacked as st

    cfg = nl.load_config("debug", ["model.vocab_size=11", f"model.tie_embeddings={str(tied).lower()}",
                                   "model.bias=true"]).model
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(nl.build_model(cfg))
    x = torch.randint(0, 11, (6, 9))

    def grads(stacked, flat):
        flat.grad.zero_()
        stacked(x).square().mean().backward()
        return flat.grad.clone()

    stacked, flat = stack_models(models, "cpu")
    linear = [n for n in flat.spans if n.endswith("qkv.weight")]
    assert linear and all(flat.layouts[n] == ((), True) and flat.leaves[n].shape[1:] == flat.spans[n].shape[::-1]
                          for n in linear)
    gains = [n for n in flat.spans if "norm" in n and n.endswith("weight")]
    assert gains and all(flat.layouts[n] == ((1,), False) for n in gains)
    assert "wte.weight" not in flat.layouts   # the embedding reads [E, V, C], the leaf's own shape
    if tied:   # the head reads the same weight transposed: two layouts, so a view each step
        assert "lm_head.weight" not in flat.spans and flat._claims["wte.weight"] == {((), False), ((), True)}
    else:
        assert flat.layouts["lm_head.weight"] == ((), True)
    s = flat.spans[linear[0]]
    assert flat.leaves[linear[0]].data_ptr() == flat.data[:, s.offset].data_ptr()   # a view, not a copy
    got = grads(stacked, flat)
    monkeypatch.setattr(st.Flat, "relayout", lambda self: None)
    default, flat0 = stack_models(models, "cpu")
    assert not flat0.layouts and torch.equal(grads(default, flat0), got)
