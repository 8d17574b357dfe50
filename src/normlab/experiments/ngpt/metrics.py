"""ngpt: steps to the baseline's final validation loss, and the extra loss a 10x learning rate costs."""
from __future__ import annotations

import math

from normlab.report.metrics import metric


def reached_at(run, target: float) -> int | None:
    """First evaluation step whose val loss is <= target, or None when the run never gets there."""
    return next((s for s, v in sorted(run.val) if v <= target), None)


def steps_to(run, target: float) -> int:
    """reached_at, or the run's budget when it never gets there (the claim's paired difference counts a miss as
    the whole budget: conservative for 'fewer steps')."""
    hit = reached_at(run, target)
    return hit if hit is not None else int(run.summary.get("steps") or len(run.loss))


@metric("steps_to_baseline_final", scope="pair", units="steps")
def steps_to_baseline_final(a, b):
    """steps(a) - steps(b) to reach b's (the baseline's) final validation loss, same seed."""
    target = b.summary.get("val_loss")
    if b.status != "complete" or not isinstance(target, (int, float)) or not math.isfinite(target):
        return None
    return float(steps_to(a, target) - steps_to(b, target))


def _val(run) -> float:
    v = run.summary.get("val_loss")
    ok = run.status == "complete" and isinstance(v, (int, float)) and math.isfinite(v)
    return min(float(v), run.ln_vocab) if ok else run.ln_vocab


@metric("lr10x_extra_loss", scope="group", units="nats/token")
def lr10x_extra_loss(runs):
    """(ngpt_lr10x - ngpt) - (gpt_lr10x - gpt) in val loss for one seed: < 0 means nGPT loses less."""
    by = {r.variant: r for r in runs}
    if not {"gpt", "ngpt", "gpt_lr10x", "ngpt_lr10x"} <= set(by):
        return None
    return (_val(by["ngpt_lr10x"]) - _val(by["ngpt"])) - (_val(by["gpt_lr10x"]) - _val(by["gpt"]))
