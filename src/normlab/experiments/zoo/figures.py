"""zoo: the ranking by final validation loss (95 % t-intervals over seeds), the refused pairs, and a
ranked-interval figure (small multiples instead of 29 colours on one axis)."""
from __future__ import annotations

import numpy as np
from scipy import stats

from normlab.report.metrics import final_val_loss
from normlab.report.render import cell
from normlab.report.tables import Row, common_rows, metric_row, stat

LEVEL = 0.95


def t_interval(values) -> tuple[float, float]:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if len(vals) < 2:
        return float("nan"), float("nan")
    lo, hi = stats.t.interval(LEVEL, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
    return float(lo), float(hi)


def _pair(runs) -> tuple[str, str]:
    from normlab.model import PLACEMENTS, kind_is_used

    for r in runs:
        norm = (r.config.get("model") or {}).get("norm") or {}
        if norm:
            p = norm.get("placement", "?")
            used = p not in PLACEMENTS or kind_is_used(p) or norm.get("final") == "always"
            return (norm.get("kind", "?") if used else "-"), p
    return "?", "?"


def ranking(groups) -> list[dict]:
    out = []
    for variant, runs in groups.items():
        s = stat(final_val_loss(r) for r in runs)
        kind, placement = _pair(runs)
        out.append({"variant": variant, "kind": kind, "placement": placement, "mean": s.mean,
                    "ci": list(t_interval(s.values)), "values": s.values, "n": len(s.values),
                    "not_finished": sum(r.status != "complete" for r in runs), "params": runs[0].summary.get("params")})
    out.sort(key=lambda e: (not np.isfinite(e["mean"]), e["mean"] if np.isfinite(e["mean"]) else 0.0))
    for i, e in enumerate(out):
        e["rank"] = i + 1
    return out


def _ranking_table(entries: list[dict]) -> str:
    best = entries[0] if entries and np.isfinite(entries[0]["mean"]) else None
    lines = ["| rank | variant | kind | placement | final val loss | 95% CI | gap to #1 | seeds | not complete | params |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        if not np.isfinite(e["mean"]):
            lines.append(f"| {e['rank']} | {cell(e['variant'])} | {cell(e['kind'])} | {cell(e['placement'])} | n/a | n/a | n/a | 0 | "
                         f"{e['not_finished']} | {e['params'] or ''} |")
            continue
        ci = f"[{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]" if np.isfinite(e["ci"][0]) else "n/a"
        lines.append(f"| {e['rank']} | {cell(e['variant'])} | {cell(e['kind'])} | {cell(e['placement'])} | {e['mean']:.3f} | {ci} | "
                     f"+{e['mean'] - best['mean']:.3f} | {e['n']} | {e['not_finished']} | {e['params'] or ''} |")
    return "\n".join(lines)


def refused_pairs() -> list[dict]:
    from normlab.model import PLACEMENTS, pair_reason
    from normlab.norms import NORMS

    return [{"kind": k, "placement": p, "reason": pair_reason(k, p)}
            for k in sorted(NORMS) for p in sorted(PLACEMENTS) if pair_reason(k, p)]


def rows(groups) -> list[Row]:
    return common_rows(groups) + [metric_row("Train time (s)", lambda r: r.summary.get("train_time_s"), groups, 1)]


def sections(groups) -> dict[str, str]:
    refused = ["| kind | placement | why refused |", "|---|---|---|"]
    refused += [f"| {cell(r['kind'])} | {cell(r['placement'])} | {cell(r['reason'])} |" for r in refused_pairs()]
    return {"Ranking by final validation loss": _ranking_table(ranking(groups)),
            "Refused pairs (validity matrix)": "\n".join(refused)}


def figures(groups) -> dict:
    from normlab.report.plots import plt

    done = [e for e in ranking(groups) if np.isfinite(e["mean"])][::-1]
    if not done:
        return {}
    fig, ax = plt.subplots(figsize=(8, 0.26 * len(done) + 1.2))
    means = np.array([e["mean"] for e in done])
    lo = np.array([e["ci"][0] if np.isfinite(e["ci"][0]) else e["mean"] for e in done])
    hi = np.array([e["ci"][1] if np.isfinite(e["ci"][1]) else e["mean"] for e in done])
    ax.errorbar(means, range(len(done)), xerr=[means - lo, hi - means], fmt="o", capsize=3)
    for i, e in enumerate(done):
        ax.scatter(e["values"], [i] * len(e["values"]), s=8, color="grey", zorder=3)
    ax.set_yticks(range(len(done)), [e["variant"] for e in done])
    ax.set_xlabel(f"final validation loss (mean, {LEVEL:.0%} t-interval; grey: seeds)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return {"ranking.png": (fig, "Every valid norm kind x placement ranked by final validation loss: mean over seeds "
                                 "with its 95 % t-interval, each seed in grey. Overlapping intervals cannot be "
                                 "told apart at this seed count.")}


def data(groups) -> dict:
    return {"ranking": ranking(groups), "refused_pairs": refused_pairs()}


def notes(groups) -> list[str]:
    return ["Placements none and rezero have no norm slot and no final norm, so the kind is unused: one variant each.",
            "Every variant shares one budget (steps, batch, learning rate, schedule); a scheme that wants another "
            "learning rate (DyT, Post-LN without warmup) is ranked at this one: see `normlab run lr-sweep`.",
            "DyT does not rescale its input: at init std 0.02 and d_model 32 its outputs are ~100x smaller than an "
            "RMSNorm's, and at alpha0 = 0.5 runs can stall at letter frequencies."]
