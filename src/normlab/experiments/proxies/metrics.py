"""proxies' metrics: LR sensitivity of one LR curve, layer 0's attention logit and |log Z| at the last step, and
the log Z drift precondition (Wortsman et al. 2023, arXiv 2309.14322).

A group side holds one seed's runs of one LR curve. A run that diverged (stopped by the loss bound or a
non-finite loss) counts as ln V, the paper's min(loss, loss at init) with a uniform init.
"""
from __future__ import annotations

import math

import numpy as np

from normlab.report.metrics import FLOAT32_MAX, metric, precondition, probe_peak_log10



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


@metric("capped_val_loss", units="nats/token")
def capped_val_loss(run):
    """Final val loss capped at ln V (a diverged run counts as ln V, the loss of a uniform guess)."""
    return capped(run) if run.finished else None


@metric("lr_curve_sensitivity", scope="group", units="nats/token")
def lr_curve_sensitivity(runs):
    """LR sensitivity of one LR curve: mean over the grid of min(loss, ln V) minus the best."""
    return sensitivity_of(runs)


@metric("log10_peak_attn_logit")
def log10_peak_attn_logit(run):
    """log10 of the largest attention logit over every probe step and layer (non-finite: float32's largest)."""
    return probe_peak_log10(run, "logit_stats/attn_max/*")


def last_probe(run, key: str) -> float | None:
    """The probe scalar at the run's last probe step (for a run stopped early, the last step it reached)."""
    probes = run.probes
    series = (probes.scalars.get(key) or {}) if probes is not None else {}
    return float(series[max(series)]) if series else None


@metric("log10_attn_logit_end")
def log10_attn_logit_end(run):
    """log10 of layer 0's largest attention logit at the last probe step, where Wortsman et al. read it (at step
    2e3, layer 0: "much earlier than 2e3 was uninformative"); non-finite counts as float32's largest."""
    v = last_probe(run, "logit_stats/attn_max/layer0")
    if v is None:
        return None
    return math.log10(min(max(v, 1e-30), FLOAT32_MAX)) if not math.isnan(v) else math.log10(FLOAT32_MAX)


@metric("abs_log_z_end", units="nats")
def abs_log_z_end(run):
    """|mean log Z| of the output logits at the last probe step with a finite value (Wortsman et al. Fig. 4: the
    drift shows late; a run that went non-finite keeps the drift it had reached, so it is counted, not dropped)."""
    finite = [v for v in _series_by_step(run, "output_lse/mean") if math.isfinite(v)]
    return abs(finite[-1]) if finite else None


def _series_by_step(run, key: str) -> list[float]:
    probes = run.probes
    series = (probes.scalars.get(key) or {}) if probes is not None else {}
    return [float(series[k]) for k in sorted(series)]


def late_peak_abs(run, key: str = "output_lse/mean", late: float = 0.3) -> float | None:
    """Largest |value| of a probe scalar over the probe steps in the last `late` fraction of the run's steps
    (non-finite values left out): the paper's drift is late, and a transient at the LR peak is not it."""
    probes = run.probes
    series = (probes.scalars.get(key) or {}) if probes is not None else {}
    steps = int((run.config.get("train") or {}).get("steps") or (max(series) if series else 0))
    values = [abs(float(v)) for k, v in series.items() if k >= (1 - late) * steps and math.isfinite(v)]
    return max(values) if values else None


@precondition("log_z_drifts")
def log_z_drifts(groups, variants: str, factor: float = 2.0, late: float = 0.3):
    """Some run of the variants matching the glob has |mean log Z| past factor x ln V in the last `late` fraction
    of its steps (log Z starts near ln V): without that, output-logit divergence is absent at this scale and a
    z-loss claim tests nothing."""
    import fnmatch

    runs = [r for v, rs in groups.items() if fnmatch.fnmatchcase(v, variants) for r in rs]
    peaks = [(p, r.ln_vocab) for r in runs if (p := late_peak_abs(r, late=late)) is not None
             and math.isfinite(r.ln_vocab)]
    if not peaks:
        return False, f"no log Z probe data for {variants}"
    worst = max(p / lv for p, lv in peaks)
    return worst > factor, (f"largest |mean log Z| in the last {late:.0%} of the steps over {len(peaks)} runs of "
                            f"{variants} is {worst:.2f} x ln V (needs > {factor})")
