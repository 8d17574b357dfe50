"""lr-sweep's metrics: LR sensitivity per seed (Wortsman et al. 2023, sec. 2.2) and the best-of-grid loss
chosen on the other seeds (leave-one-seed-out), so no seed's value selected itself."""
from __future__ import annotations

import math

import numpy as np

from normlab.report.metrics import metric


def lr_of(run) -> float:
    return float((run.config.get("train") or {}).get("lr"))


def capped_loss(run) -> float:
    """min(val loss, ln V); a diverged run counts as ln V (the loss of a uniform prediction)."""
    l0 = run.ln_vocab
    val = run.summary.get("val_loss")
    if run.status != "complete" or not isinstance(val, (int, float)) or not math.isfinite(val):
        return l0
    return min(float(val), l0)


@metric("lr_sensitivity", scope="group", units="nats/token")
def lr_sensitivity(runs):
    """Mean over the LR grid of min(val loss, ln V) minus the best: 0 = every LR is as good as the best."""
    losses = [capped_loss(r) for r in runs]
    return float(np.mean(losses) - min(losses)) if len(losses) > 1 else None


@metric("best_lr_loss_loso", scope="seeds", units="nats/token")
def best_lr_loss_loso(runs_by_seed: dict):
    """Seed k's capped val loss at the variant (LR, alpha0) whose mean over the *other* seeds was lowest."""
    out = {}
    for seed, runs in runs_by_seed.items():
        others = [r for s, rs in runs_by_seed.items() if s != seed for r in rs]
        if not others:
            out[seed] = None
            continue
        means = {}
        for r in others:
            means.setdefault(r.variant, []).append(capped_loss(r))
        best = min(means, key=lambda v: np.mean(means[v]))
        mine = [r for r in runs if r.variant == best]
        out[seed] = capped_loss(mine[0]) if mine else None
    return out
