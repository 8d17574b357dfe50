"""depth: per-block profiles (residual variance, angular distance, skip cost) at the end of training, one
column per depth and one line per placement (the lead figure), and the final loss against depth.

Runs are placed by their config (model.norm.placement, model.n_layer); profiles are means over seeds
of the depth_stats probe's arrays at each run's last probe step.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from normlab.report.metrics import final_val_loss
from normlab.report.render import cell
from normlab.report.tables import common_rows, stat

LEAD_FIGURE = "depth_profiles.png"
PLACEMENTS = ("pre", "lns", "peri", "mixln")
ROWS = (("var", "residual variance after the block", True), ("angle", "angular distance in -> out (/pi)", False),
        ("skip", "loss increase when skipped (nats)", False))


def _m():
    from normlab.experiments.spec import load_module

    return load_module(Path(__file__).with_name("metrics.py"), "normlab.experiments._depth.metrics")


def cells(groups) -> dict[tuple[str, int], list]:
    """{(placement, n_layer): runs}."""
    out: dict[tuple[str, int], list] = {}
    for runs in groups.values():
        for r in runs:
            model = r.config.get("model") or {}
            key = ((model.get("norm") or {}).get("placement", "?"), int(model.get("n_layer") or 0))
            out.setdefault(key, []).append(r)
    return out


def _mean_profile(runs, key: str) -> np.ndarray | None:
    profiles = [p for r in runs if (p := _m().profile(r, key)) is not None]
    if not profiles or len({len(p) for p in profiles}) != 1:
        return None
    stacked = np.stack(profiles)
    return np.nanmean(np.where(np.isfinite(stacked), stacked, np.nan), axis=0)


def _profiles(cs):
    from normlab.report.plots import plt

    depths = sorted({d for _, d in cs})
    fig, axes = plt.subplots(len(ROWS), len(depths), figsize=(3.6 * len(depths) + 1.5, 2.8 * len(ROWS)),
                             squeeze=False, sharex="col")
    placements = [p for p in PLACEMENTS if any(k[0] == p for k in cs)] + sorted({p for p, _ in cs} - set(PLACEMENTS))
    for col, depth in enumerate(depths):
        for row, (key, label, log) in enumerate(ROWS):
            ax = axes[row][col]
            for i, placement in enumerate(placements):
                prof = _mean_profile(cs.get((placement, depth), []), key)
                if prof is not None:
                    ax.plot(np.arange(len(prof)), prof, marker=".", color=f"C{i}", label=placement)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{depth} layers")
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
            if row == len(ROWS) - 1:
                ax.set_xlabel("block")
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    for ax in axes[-1]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [Line2D([], [], color=f"C{i}", marker=".", label=p) for i, p in enumerate(placements)]
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.suptitle("What each block does at the end of training (mean over seeds): the curse of depth")
    fig.tight_layout()
    return fig


def _loss_vs_depth(cs):
    from normlab.report.plots import plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, placement in enumerate(p for p in PLACEMENTS if any(k[0] == p for k in cs)):
        pts = sorted((d, stat(final_val_loss(r) for r in runs)) for (p, d), runs in cs.items() if p == placement)
        x = np.array([d for d, _ in pts])
        ax.errorbar(x, [s.mean for _, s in pts], yerr=[s.std for _, s in pts], marker="o", capsize=3,
                    color=f"C{i}", label=placement)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("layers")
    ax.set_ylabel("final val loss (nats/token)")
    ax.set_title("Final validation loss vs depth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figures(groups) -> dict:
    cs = cells(groups)
    if not cs:
        return {}
    return {LEAD_FIGURE: (_profiles(cs), "Per block, at the last probe step: the variance of the residual stream "
                                         "after it (log scale), the angular distance between its input and "
                                         "output, and the probe-batch loss increase when it is replaced by the "
                                         "identity; one column per depth, one line per placement. The curse of "
                                         "depth: Pre-LN's variance climbs and its deep blocks flatten toward 0 "
                                         "angle and 0 skip cost."),
            "depth_loss.png": (_loss_vs_depth(cs), "Final validation loss against depth per placement (mean ± sd "
                                                   "over seeds).")}


def _summary_table(cs) -> str:
    m = _m()
    cols = [("final val loss", final_val_loss, 3), ("log10 var growth", m.log10_variance_growth, 2),
            ("late-quarter angle", m.late_angle, 3), ("late - early angle", m.late_minus_early_angle, 3),
            ("late-quarter skip cost", m.late_skip_cost, 4)]
    lines = ["| placement | layers | " + " | ".join(c for c, _, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for (placement, depth), runs in sorted(cs.items(), key=lambda kv: (kv[0][1], PLACEMENTS.index(kv[0][0])
                                                                      if kv[0][0] in PLACEMENTS else 9)):
        lines.append(f"| {cell(placement)} | {depth} | " + " | ".join(stat(fn(r) for r in runs).fmt(d)
                                                                   for _, fn, d in cols) + " |")
    return "\n".join(lines)


def rows(groups):
    return common_rows(groups)[:2] + common_rows(groups)[3:]


def sections(groups) -> dict[str, str]:
    return {"Per-placement summary (mean ± sd over seeds)": _summary_table(cells(groups))}


def notes(groups) -> list[str]:
    return ["Skip costs are measured on one fixed probe batch without retraining (the papers remove a layer and "
            "re-evaluate on benchmarks); negative values mean the block was hurting that batch.",
            "d_model 32 stands in for the papers' 768-2048: the 32-layer models have ~0.4M parameters."]
