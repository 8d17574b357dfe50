"""Fixture run directories written by hand (no training): what a report reads, and nothing more."""
import json

import numpy as np


def write_run(root, variant, seed, losses, status="complete", val=None, samples=(), config=None, probes=None,
              summary=None):
    """One run directory: metrics.jsonl (losses, optional val and probe scalars), summary.json, samples, config."""
    d = root / f"{variant}-seed{seed}"
    d.mkdir(parents=True)
    lines = [{"step": s, "loss": float(v), "lr": 0.01} for s, v in enumerate(losses)]
    if val is not None:
        lines.append({"step": len(losses), "val_loss": float(val)})
    for step, scalars in (probes or {}).items():
        lines.append({"step": step, **{f"probe/{k}": float(v) for k, v in scalars.items()}})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    s = {"status": status, "params": 100, "steps": len(losses), "steps_done": len(losses),
         "val_loss": float(val) if val is not None and status == "complete" else None,
         "val_bpb": float(val) / 0.7 if val is not None and status == "complete" else None,
         "diverged_step": len(losses) - 1 if status == "diverged" else None, **(summary or {})}
    (d / "summary.json").write_text(json.dumps(s))
    (d / "samples.txt").write_text("".join(x + "\n" for x in samples))
    import yaml

    (d / "config.yaml").write_text(yaml.safe_dump(config or {"model": {"vocab_size": 27}, "data": {"task": "lm"}}))
    return {"variant": variant, "seed": seed, "dir": d.name}


def write_experiment(root, name, variants, runs, seeds, **extra):
    (root / "experiment.json").write_text(json.dumps({"name": name, "title": name, "variants": variants,
                                                      "seeds": seeds, "runs": runs, **extra}))
    return root


def decaying(level, seed, n=300, noise=0.0, rng=None):
    steps = np.arange(n)
    out = level + 1.5 * np.exp(-steps / 40) + 0.01 * seed
    return out + (rng.normal(0, noise, n) if rng is not None and noise else 0)
