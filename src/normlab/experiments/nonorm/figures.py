"""nonorm: divergence steps, attention-logit and activation maxima per variant, and where each blow-up starts."""
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


def _site(jump: dict | None) -> str:
    if not jump:
        return "none found"
    growth = f" ({jump['growth']:.3g}x: {jump['max_abs_before']:.3g} -> {jump['max_abs']:.3g})" if jump.get("growth") \
        else " (non-finite)"
    return f"`{jump['module']}`{growth}"


def blowup_table(groups) -> str:
    """One line per diverged seed: the step, the loss, the first tensor whose max |activation| jumped (forensics
    first_jump), the first non-finite tensor and gradient, if any (first_bad, first_nonfinite_grad)."""
    lines = ["| variant | seed | step | reason | first tensor to jump | first non-finite output | first non-finite grad |",
             "|---|---|---|---|---|---|---|"]
    for v, rs in groups.items():
        for r in sorted(rs, key=lambda r: r.seed):
            if r.status != "diverged":
                continue
            s = r.summary
            bad = s.get("first_bad") or {}
            grad = s.get("first_nonfinite_grad") or {}
            lines.append(f"| {v} | {r.seed} | {s.get('diverged_step')} | {s.get('diverged_reason', '')} | "
                         f"{_site(s.get('first_jump'))} | "
                         f"{'`' + bad['module'] + '`' if bad.get('kind') == 'non-finite' else 'none'} | "
                         f"{', '.join(grad.get('layers', [])) or 'none'} |")
    return "\n".join(lines) if len(lines) > 2 else "No run diverged."


def sections(groups) -> dict[str, str]:
    return {"Where each blow-up starts (forensics: the diverging step replayed from the last good state)":
            blowup_table(groups)}


def notes(groups) -> list[str]:
    steps = "; ".join(f"{v}: " + ", ".join(str(r.summary.get("diverged_step")) if r.status == "diverged" else "none"
                                           for r in rs) for v, rs in groups.items())
    return ["Diverged = training loss non-finite or above train.loss_bound; the step is the first such step.",
            f"Divergence steps per seed: {steps}"]
