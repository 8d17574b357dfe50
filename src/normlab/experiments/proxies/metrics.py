"""proxies' metrics: LR sensitivity per width and its growth with width, the peak attention logit, and the
log Z drift (Wortsman et al. 2023, arXiv 2309.14322).

A group side holds one seed's runs of several variants; LR curves are split by width (model.d_model),
so a side over every width gives one sensitivity per width. A run that diverged (stopped by the loss
bound or a non-finite loss) counts as ln V, the paper's min(loss, loss at init) with a uniform init.
"""
from __future__ import annotations

import math

import numpy as np

from normlab.report.metrics import metric, precondition, probe_peak_log10



def width_of(run) -> int:
    return int((run.config.get("model") or {}).get("d_model") or 0)


def lr_of(run) -> float:
    return float((run.config.get("train") or {}).get("lr"))


def capped(run) -> float:
    """min(final val loss, ln V); a diverged or unfinished run counts as ln V."""
    v = run.summary.get("val_loss")
    if run.status != "complete" or not isinstance(v, (int, float)) or not math.isfinite(v):
        return run.ln_vocab
    return min(float(v), run.ln_vocab)


def sensitivity_of(runs) -> float | None:
    """Mean over the runs' LR grid of the capped loss minus its minimum (one seed, one LR curve)."""
    losses = [capped(r) for r in runs]
    return float(np.mean(losses) - min(losses)) if len(losses) > 1 else None


def by_width(runs) -> dict[int, list]:
    out: dict[int, list] = {}
    for r in runs:
        out.setdefault(width_of(r), []).append(r)
    return dict(sorted(out.items()))


@metric("capped_val_loss", units="nats/token")
def capped_val_loss(run):
    """Final val loss capped at ln V (a diverged run counts as ln V, the loss of a uniform guess)."""
    return capped(run) if run.finished else None


@metric("lr_curve_sensitivity", scope="group", units="nats/token")
def lr_curve_sensitivity(runs):
    """LR sensitivity of one LR curve: mean over the grid of min(loss, ln V) minus the best."""
    return sensitivity_of(runs)


@metric("mean_lr_sensitivity", scope="group", units="nats/token")
def mean_lr_sensitivity(runs):
    """LR sensitivity per width (the side's runs split by d_model), averaged over the widths."""
    values = [s for rs in by_width(runs).values() if (s := sensitivity_of(rs)) is not None]
    return float(np.mean(values)) if values else None


@metric("sensitivity_growth", scope="group", units="nats per doubling of width")
def sensitivity_growth(runs):
    """Least-squares slope of LR sensitivity against log2(d_model) over the side's widths (> 0: grows with width)."""
    points = [(math.log2(w), s) for w, rs in by_width(runs).items() if w and (s := sensitivity_of(rs)) is not None]
    if len(points) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def _series(run, key: str) -> list[float]:
    probes = run.probes
    return list((probes.scalars.get(key) or {}).values()) if probes is not None else []


@metric("log10_peak_attn_logit")
def log10_peak_attn_logit(run):
    """log10 of the largest attention logit over every probe step and layer (non-finite: float32's largest)."""
    return probe_peak_log10(run, "logit_stats/attn_max/*")


def peak_abs(run, key: str = "output_lse/mean") -> float | None:
    """Largest |value| of a probe scalar over the run's probe steps, non-finite values left out."""
    values = [abs(v) for v in _series(run, key) if math.isfinite(v)]
    return max(values) if values else None


@metric("peak_abs_log_z", scope="group", units="nats")
def peak_abs_log_z(runs):
    """Mean over the side's runs of the largest |mean log Z| over the probe steps."""
    values = [v for r in runs if (v := peak_abs(r)) is not None]
    return float(np.mean(values)) if values and len(values) == len(runs) else None


@precondition("log_z_drifts")
def log_z_drifts(groups, variants: str, factor: float = 2.0):
    """Some run of the variants matching the glob drifts past factor x ln V in |mean log Z| (log Z starts near
    ln V): without that, output-logit divergence is absent at this scale and a z-loss claim tests nothing."""
    import fnmatch

    runs = [r for v, rs in groups.items() if fnmatch.fnmatchcase(v, variants) for r in rs]
    peaks = [(p, r.ln_vocab) for r in runs if (p := peak_abs(r)) is not None and math.isfinite(r.ln_vocab)]
    if not peaks:
        return False, f"no log Z probe data for {variants}"
    worst = max(p / lv for p, lv in peaks)
    return worst > factor, (f"largest |mean log Z| over {len(peaks)} runs of {variants} is {worst:.2f} x ln V "
                            f"(needs > {factor})")
