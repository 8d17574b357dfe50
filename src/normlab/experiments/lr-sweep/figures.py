"""lr-sweep: validation loss at each learning rate per scheme, the stability basin, LR sensitivity, and
the loss-vs-LR figure. Variants are `<scheme>_<lr>`; the learning rate is read back from each config."""
from __future__ import annotations

import numpy as np

from normlab.report.render import cell
from normlab.report.tables import common_rows, stat

BASIN_NATS = 0.1   # a learning rate is "in the basin" when its mean loss is within this of the scheme's best
UNIGRAM_FRAC = 0.99  # a run whose val bits/byte reaches 99 % of the text's byte-unigram entropy learned nothing more


def _m():
    from normlab.experiments.spec import load_module
    from pathlib import Path

    return load_module(Path(__file__).with_name("metrics.py"), "normlab.experiments._lr_sweep.metrics")


def collapsed(run) -> bool:
    bpb = run.summary.get("val_bpb")
    entropy = ((run.summary.get("data") or {}).get("val") or {}).get("byte_entropy_bits")
    return run.status == "complete" and bpb is not None and bool(entropy) and bpb >= UNIGRAM_FRAC * entropy


def grid(groups) -> dict[str, dict[float, list]]:
    out: dict[str, dict[float, list]] = {}
    for variant, runs in groups.items():
        scheme = variant.rpartition("_")[0] or variant
        for r in runs:
            out.setdefault(scheme, {}).setdefault(_m().lr_of(r), []).append(r)
    return {s: dict(sorted(cells.items())) for s, cells in out.items()}


def summarize(groups) -> list[dict]:
    m = _m()
    out = []
    for scheme, cells in grid(groups).items():
        per_lr = []
        for lr, runs in cells.items():
            done = stat(r.summary.get("val_loss") for r in runs if r.status == "complete")
            per_lr.append({"lr": lr, "mean": done.mean, "std": done.std, "values": done.values, "runs": len(runs),
                           "diverged": sum(r.status == "diverged" for r in runs),
                           "unigram": sum(collapsed(r) for r in runs)})
        finite = [c for c in per_lr if np.isfinite(c["mean"]) and c["diverged"] == 0]
        best = min(finite, key=lambda c: c["mean"]) if finite else None
        basin = [c["lr"] for c in finite if best and c["mean"] <= best["mean"] + BASIN_NATS]
        seeds = sorted({r.seed for runs in cells.values() for r in runs})
        sens = stat(m.lr_sensitivity([r for runs in cells.values() for r in runs if r.seed == s]) for s in seeds)
        out.append({"scheme": scheme, "cells": per_lr, "best_lr": best["lr"] if best else None,
                    "best_loss": best["mean"] if best else None, "basin": [min(basin), max(basin)] if basin else None,
                    "basin_size": len(basin), "lowest_diverging_lr": next((c["lr"] for c in per_lr if c["diverged"]),
                                                                          None),
                    "sensitivity": sens.mean, "sensitivity_std": sens.std, "sensitivity_values": sens.values})
    return out


def _lr(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def _loss_table(entries) -> str:
    lrs = sorted({c["lr"] for e in entries for c in e["cells"]})
    lines = ["| scheme | " + " | ".join(f"lr {_lr(lr)}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for e in entries:
        by_lr = {c["lr"]: c for c in e["cells"]}
        cells = []
        for lr in lrs:
            c = by_lr.get(lr)
            if c is None:
                cells.append("")
                continue
            text = stat(c["values"]).fmt(3)
            text += f" (diverged {c['diverged']}/{c['runs']})" if c["diverged"] else ""
            text += f" (unigram {c['unigram']}/{c['runs']})" if c["unigram"] else ""
            cells.append(f"**{text}**" if lr == e["best_lr"] else text)
        lines.append(f"| {cell(e['scheme'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _basin_table(entries) -> str:
    overall = min((e["best_loss"] for e in entries if e["best_loss"] is not None), default=None)
    lines = ["| scheme | best lr | best val loss | vs the grid's best | basin (within 0.1 nats of best) | "
             "lowest lr with a divergence | LR sensitivity (mean ± sd over seeds) |", "|---|---|---|---|---|---|---|"]
    for e in entries:
        best = (f"{_lr(e['best_lr'])} | {e['best_loss']:.3f} | +{e['best_loss'] - overall:.3f}" if e["best_lr"]
                else "n/a | n/a | n/a")
        basin = f"{_lr(e['basin'][0])} .. {_lr(e['basin'][1])} ({e['basin_size']} lr)" if e["basin"] else "none"
        bad = _lr(e["lowest_diverging_lr"]) if e["lowest_diverging_lr"] else "none"
        sens = f"{e['sensitivity']:.3f} ± {e['sensitivity_std']:.3f}" if np.isfinite(e["sensitivity"]) else "n/a"
        lines.append(f"| {cell(e['scheme'])} | {best} | {basin} | {bad} | {sens} |")
    return "\n".join(lines)


def rows(groups):
    return common_rows(groups)


def sections(groups) -> dict[str, str]:
    entries = summarize(groups)
    return {"Validation loss at each learning rate (best in bold)": _loss_table(entries),
            "Stability basin per scheme": _basin_table(entries)}


def figures(groups) -> dict:
    from normlab.report.plots import finish, plt

    entries = summarize(groups)
    fig, ax = plt.subplots(figsize=(8, 4.6))
    top = next((r.ln_vocab for rs in groups.values() for r in rs if np.isfinite(r.ln_vocab)), None)
    for i, e in enumerate(entries):
        ok = [c for c in e["cells"] if np.isfinite(c["mean"])]
        if ok:
            x = np.array([c["lr"] for c in ok])
            mean, sd = np.array([c["mean"] for c in ok]), np.array([c["std"] for c in ok])
            ax.plot(x, mean, marker="o", color=f"C{i % 10}", label=e["scheme"])
            ax.fill_between(x, mean - sd, mean + sd, color=f"C{i % 10}", alpha=0.15, lw=0)
        bad = [c["lr"] for c in e["cells"] if c["diverged"]]
        if bad and top is not None:
            ax.scatter(bad, [top] * len(bad), marker="x", s=60, color=f"C{i % 10}", zorder=4)
    if top is not None:
        ax.axhline(top, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    finish(fig, ax, "Final validation loss vs learning rate (mean ± sd over seeds)", "peak learning rate",
           "validation loss (nats/token)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    fig.tight_layout()
    return {"lr_sweep.png": (fig, "Final validation loss against the peak learning rate per scheme; x = a seed "
                                  "diverged (drawn at ln V, a uniform prediction). A flat, wide curve is a stable "
                                  "scheme; the basin is where the curve stays near its minimum.")}


def data(groups) -> dict:
    return {"schemes": summarize(groups)}


def notes(groups) -> list[str]:
    return ["LR sensitivity and the basin are relative to the scheme's own best: a scheme that never trains well "
            "can look insensitive. Read them with 'vs the grid's best' and the unigram marks.",
            "One budget (steps, warmup, schedule) for every scheme: a scheme's basin is measured at this budget."]
