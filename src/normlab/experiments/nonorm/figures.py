"""nonorm: divergence steps, attention-logit and activation maxima per variant."""
from __future__ import annotations

from normlab.report.metrics import probe_peak
from normlab.report.tables import common_rows, metric_row


def rows(groups):
    out = common_rows(groups)
    out.insert(3, metric_row("Divergence step (diverged seeds)",
                             lambda r: r.summary.get("diverged_step") if r.status == "diverged" else None, groups, 0))
    out += [metric_row("Max attention logit over training (before clamp)",
                       lambda r: probe_peak(r, "logit_stats/attn_max/*"), groups, 1),
            metric_row("Max |residual activation| over training", lambda r: probe_peak(r, "massive_activations/top1/*"),
                       groups, 1)]
    return out


def notes(groups) -> list[str]:
    steps = "; ".join(f"{v}: " + ", ".join(str(r.summary.get("diverged_step")) if r.status == "diverged" else "none"
                                           for r in rs) for v, rs in groups.items())
    return ["Diverged = training loss non-finite or above train.loss_bound; the step is the first such step.",
            f"Divergence steps per seed: {steps}"]
