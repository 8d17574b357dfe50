"""The nonorm and sinks analyses on fixture run directories (no training), and experiment presets."""
import json

import numpy as np
import pytest

from normlab.config import ConfigError
from normlab.experiments import expand, load_experiment
from normlab.report import build_report


def _run(root, name, summary, watch=()):
    d = root / name
    d.mkdir(parents=True)
    with open(d / "metrics.jsonl", "w") as f:
        for step in range(20):
            f.write(json.dumps({"step": step, "loss": 5.0 - 0.1 * step}) + "\n")
        for step, logit, act in watch:
            f.write(json.dumps({"step": step, "loss": 3.0, "max_attn_logit": logit, "max_act": act}) + "\n")
    (d / "summary.json").write_text(json.dumps({"steps": 20, "params": 10, **summary}))
    return {"variant": name.rsplit("-seed", 1)[0], "seed": int(name[-1]), "dir": name}


def _experiment(root, name, variants, runs):
    (root / "experiment.json").write_text(json.dumps({"name": name, "title": name, "seed_ref": "x",
                                                      "variants": variants, "seeds": [0, 1], "runs": runs}))


def test_nonorm_claims_follow_the_runs(tmp_path):
    root = tmp_path / "nonorm"
    ok = {"status": "complete", "val_loss": 3.0, "val_bpb": 1.2, "max_attn_logit": 8.0, "max_act": 20.0}
    boom = {"status": "diverged", "diverged_step": 60, "val_loss": None, "max_attn_logit": 1900.0, "max_act": 500.0}
    runs = []
    for seed in (0, 1):
        runs.append(_run(root, f"norm-seed{seed}", ok, [(0, 1.0, 2.0), (10, 8.0, 20.0)]))
        runs.append(_run(root, f"nonorm-seed{seed}", boom, [(0, 1.0, 2.0), (10, 1900.0, 500.0)]))
        runs.append(_run(root, f"nonorm_init-seed{seed}", ok))
        runs.append(_run(root, f"nonorm_init_clamp-seed{seed}", ok))
    _experiment(root, "nonorm", ["norm", "nonorm", "nonorm_init", "nonorm_init_clamp"], runs)
    paths = build_report(root)
    results = json.loads(paths["results.json"].read_text())
    claims = {c["text"]: c["verdict"] for c in results["claims"]}
    assert claims["Without RMSNorm the loss blows up within a few iterations (at the LR where the normed model "
                  "trains)"] == "reproduced"
    assert claims["Init x0.01 alone is not enough: the loss still ends in divergence"] == "not reproduced"
    assert claims["Init x0.01 + attention logits clamped to [-30, 30] train stably without a norm"] == "reproduced"
    assert results["table"]["Divergence step (diverged seeds)"]["nonorm"]["mean"] == 60
    assert results["table"]["Max |attention logit| over training (before clamp)"]["nonorm"]["mean"] == 1900
    assert paths["stability_watch.png"].stat().st_size > 0


def test_sinks_report_flags_the_seed_loss_and_plots_gains(tmp_path):
    from safetensors.numpy import save_file

    root = tmp_path / "sinks"
    runs = []
    for v, loss in {"baseline": 4.0, "preaffine": 3.9, "gatednorm": 4.3}.items():
        for seed in (0, 1):
            summ = {"status": "complete", "val_loss": loss + 0.01 * seed, "val_bpb": loss / 3, "val_ppl": 50.0,
                    "max_act": 100.0, "data": {"val": {"byte_entropy_bits": 4.4}}}
            runs.append(_run(root, f"{v}-seed{seed}", summ))
            ckpt = root / f"{v}-seed{seed}" / "checkpoints" / "step_000020"
            ckpt.mkdir(parents=True)
            tensors = {"blocks.0.norm_attn_in.weight": np.array([1.0, 0.01, 2.0], dtype=np.float32)}
            if v == "preaffine":
                tensors["blocks.0.norm_attn_in.pre_scale"] = np.array([1.0, 7.0, 1.0], dtype=np.float32)
            save_file(tensors, str(ckpt / "model.safetensors"))
            (ckpt.parent / "latest").write_text("step_000020\n")
    _experiment(root, "sinks", ["baseline", "preaffine", "gatednorm"], runs)
    paths = build_report(root)
    results = json.loads(paths["results.json"].read_text())
    claims = {c["text"]: c for c in results["claims"]}
    assert claims["PreAffine reaches a lower val loss than the RMSNorm baseline"]["verdict"] == "reproduced"
    seed = claims["A ~13M GPT reaches val loss ~0.047 nats/token on WikiText-2"]
    assert seed["verdict"] == "not reproduced" and "implausibly low" in seed["note"]
    assert "flagged by the leakage guard" in seed["seed_value"]
    assert results["table"]["Min |gain| over all norms (final)"]["baseline"]["mean"] == pytest.approx(0.01)
    assert results["table"]["Max |l1 - 1| of PreAffine (final)"]["preaffine"]["mean"] == pytest.approx(6.0)
    assert paths["norm_weights.png"].stat().st_size > 0
    md = paths["report.md"].read_text()
    assert "0.0472" in md and "leakage guard" in md


def test_presets_apply_and_unknown_preset_is_refused():
    spec = load_experiment("sinks")
    paper = expand(spec, [], [0], preset="paper")
    assert paper[0].cfg.model.d_model == 256 and paper[0].cfg.data.bpe_vocab_size == 50257
    assert expand(spec, [], [0])[0].cfg.model.d_model == 128
    with pytest.raises(ConfigError, match="no preset 'papr'; presets: paper"):
        expand(spec, [], [0], preset="papr")
    assert expand(load_experiment("nonorm"), [], [0], preset="gpu")[0].cfg.model.d_model == 512
