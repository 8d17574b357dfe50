"""Probes during training, divergence forensics and `normlab replay`, and the probe figures of a report."""
import json

import numpy as np
from click.testing import CliRunner

import normlab as nl
from normlab.cli import main
from normlab.report import build_report
from normlab.rundir import read_metrics

from inject import inject_nan

# The failure is injected at a fixed batch (inject.py): the same step on every CPU, in training and in replay.
SETTINGS = ["train.steps=40", "probes.every=10", "probes.snapshot_every=5", "train.eval_batches=1", "sample.n=1"]
BAD_STEP = 17


def _losses(run):
    return [m["loss"] for m in read_metrics(run / "metrics.jsonl") if "loss" in m]


def test_probes_record_without_changing_training(tiny, tmp_path):
    short = ["train.steps=20", "train.eval_batches=1", "sample.n=1", "sample.max_new_tokens=4"]
    nl.train(tiny("name=withp", "probes.every=10", *short))
    nl.train(tiny("name=nop", "probes.every=0", "probes.grad_every=0", "probes.forensics=false", *short))
    assert _losses(tmp_path / "withp") == _losses(tmp_path / "nop")   # probes never touch the training step
    records = read_metrics(tmp_path / "withp" / "metrics.jsonl")
    probe_steps = [m["step"] for m in records if "probe/attn_entropy/layer0" in m]
    assert probe_steps == [0, 10, 20]
    for m in records:
        if "probe/attn_entropy/layer0" in m:
            assert 0 <= m["probe/attn_entropy/layer0"] <= np.log(16)
    assert all("probe/grad_norms/layer1" in m for m in records if "loss" in m)
    assert sorted(p.name for p in (tmp_path / "withp" / "probes").iterdir()) == [
        f"step_{s:06d}.npz" for s in (0, 10, 20)]
    with np.load(tmp_path / "withp" / "probes" / "step_000020.npz") as z:
        assert z["attn_entropy/per_head"].shape == (2, 2)
    assert not (tmp_path / "nop" / "probes").exists()


def test_forensics_record_and_replay_reproduce(tiny, tmp_path, monkeypatch):
    cfg = tiny("name=boom", *SETTINGS)
    inject_nan(monkeypatch, cfg, BAD_STEP, "blocks.1.mlp")
    summary = nl.train(cfg)
    assert summary["status"] == "diverged" and summary["forensics"] == "forensics.json"
    run = tmp_path / "boom"
    record = json.loads((run / "forensics.json").read_text())
    step = summary["diverged_step"]
    assert step == BAD_STEP and record["step"] == step and record["last_good_step"] == 10   # every max(5, log_every)
    assert record["replayed_in_process"]["same_step"]
    assert record["first_bad"]["module"] == "blocks.1.mlp" and record["first_bad"]["layer"] == "layer1"
    assert record["first_jump"]["module"] == "blocks.1.mlp" and record["first_jump"]["kind"] == "non-finite"
    assert summary["first_jump"]["module"] == "blocks.1.mlp"   # the summary names the site too (reports read it)
    assert set(record["max_abs_per_layer"]) >= {"wte", "layer0", "layer1"}
    assert (run / "forensics" / "last_good" / "model.safetensors").exists()
    assert (run / "forensics" / "last_good" / "state.safetensors").exists()   # no pickle anywhere
    with np.load(run / "forensics.npz") as z:
        assert np.array_equal(z[f"batch_index/step_{step:06d}"], record["batch_index"])
    r = CliRunner().invoke(main, ["replay", str(run)])
    assert r.exit_code == 0 and "reproduced (same step: True, same first bad module: True)" in r.output, r.output
    # a record that names another module is not "reproduced": the comparison can fail
    record["first_bad"]["module"] = "blocks.0.mlp.fc"
    (run / "forensics.json").write_text(json.dumps(record))
    r = CliRunner().invoke(main, ["replay", str(run)])
    assert r.exit_code == 1 and "NOT reproduced" in r.output


def test_replay_refuses_a_run_without_forensics(tiny, tmp_path):
    nl.train(tiny("name=fine", "train.steps=3", "probes.every=0", "train.eval_batches=1", "sample.n=1"))
    r = CliRunner().invoke(main, ["replay", str(tmp_path / "fine")])
    assert r.exit_code == 2 and "no forensics.json" in r.output


def test_normfree_report_has_probe_figures_and_claims(tmp_path):
    from normlab.experiments import expand, load_experiment

    spec = load_experiment("normfree")
    tiny = ["model.n_layer=2", "model.d_model=16", "model.n_head=2", "model.block_size=16", "train.steps=10",
            "train.batch_size=4", "train.warmup_steps=2", "train.eval_every=5", "train.eval_batches=1",
            "probes.every=5", "sample.n=1", "sample.max_new_tokens=4"]
    planned = expand(spec, tiny, seeds=[0, 1, 2], out_dir=str(tmp_path), exp_name="normfree")
    for p in planned:
        nl.train(p.cfg, p.run_dir)
    exp = tmp_path / "normfree"
    (exp / "experiment.json").write_text(json.dumps({
        "name": "normfree", "title": spec.title, "seed_ref": "004", "variants": list(spec.variants), "seeds": [0, 1, 2],
        "runs": [{"variant": p.variant, "seed": p.seed, "dir": p.run_dir.name} for p in planned]}))
    paths = build_report(exp, spec)   # the summary: normfree's own probes (seed 004's entropy figures) in full
    for name in ("probe_entropy_heads.png", "probe_entropy_layers.png", "probe_ffn_pr.png", "probe_overview.png",
                 "entropic_overload.png"):
        assert paths[name].stat().st_size > 0, name
    assert "probe_sinks.png" not in paths and "probe_sinks.png" in paths["report.md"].read_text()   # named as collapsed
    paths = build_report(exp, spec, "all")
    for name in ("probe_entropy_heads.png", "probe_entropy_layers.png", "probe_norm_weights.png",
                 "probe_massive_activations.png", "probe_sinks.png", "probe_grad_norms.png",
                 "probe_embedding_norms.png", "entropic_overload.png"):
        assert paths[name].stat().st_size > 0, name
    assert "probe_overview.png" not in paths and not (exp / "probe_overview.png").exists()
    md = paths["report.md"].read_text()
    for name in ("probe_nan_attention.png", "probe_nan_activations.png"):  # a healthy run: a sentence, no figure
        assert name in paths or "no non-finite values in any layer, at any probe step" in md, name
    results = json.loads(paths["results.json"].read_text())
    assert len(results["claims"]) >= 4 and "Entropic overload, layer 1" in results["table"]
    ppl = results["table"]["Perplexity exp(val loss)"]["preln-gelu"]["values"]
    val = results["table"]["Final val loss"]["preln-gelu"]["values"]
    assert np.allclose(ppl, np.exp(val), rtol=1e-12) and len(ppl) == 3
    claims = {c["id"]: c for c in results["claims"]}
    for cid in ("gelu-worse-than-relu-normfree", "entropic-overload-gelu"):   # 10 steps: attention still uniform
        assert claims[cid]["verdict"] == "untestable here", claims[cid]
        assert "chance level 1.000 = exactly uniform attention" in claims[cid]["precondition"]["reason"]


def test_first_jump_finds_a_finite_blow_up():
    """A loss over train.loss_bound with every value finite: the first module (in execution order) whose max
    |activation| grew JUMP-fold in the step is the site; steady growth below JUMP is not a jump."""
    from normlab.training.forensics import JUMP, first_jump

    before = [("wte", 0.5, 0), ("blocks.3.mlp.gate", 8.0, 0), ("blocks.3.mlp.proj", 9.0, 0), ("lm_head", 60.0, 0)]
    after = [("wte", 0.5, 0), ("blocks.3.mlp.gate", 15.0, 0), ("blocks.3.mlp.proj", 784.0, 0), ("lm_head", 6718.0, 0)]
    jump = first_jump(before, after)
    assert jump["module"] == "blocks.3.mlp.proj" and jump["layer"] == "layer3" and jump["sublayer"] == "mlp"
    assert abs(jump["growth"] - 784 / 9) < 1e-9 and jump["growth"] >= JUMP
    assert first_jump(before, [(n, m * 1.5, 0) for n, m, _ in before]) is None
    assert first_jump(before, [(n, m, 3 if n == "lm_head" else 0) for n, m, _ in before])["kind"] == "non-finite"
