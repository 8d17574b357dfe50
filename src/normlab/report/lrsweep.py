"""`lr-sweep`: final validation loss against the learning rate, per normalization scheme.

Variants are named `<scheme>_lr<lr>`; the learning rate is read back from each run's config.
LR sensitivity follows Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer
training instabilities", arXiv 2309.14322, sec. 2.2): for one seed, the mean over the grid of
min(L(lr), L0) - L*, where L0 = ln(vocab) is the loss of a uniform prediction (a diverged run
counts as L0) and L* the scheme's best loss on the grid. 0 means every learning rate is as good as
the best; it is computed per seed, and the report gives its mean ± std over seeds.
"""
from __future__ import annotations

import math

import numpy as np

from .analysis import Analysis, common_rows, register_analysis
from .runs import RunData
from .stats import Claim, Stat, compare_lower, stat

BASIN_NATS = 0.1  # a learning rate is "in the basin" when its mean loss is within this of the scheme's best
UNIGRAM_FRAC = 0.99  # a run whose val bits/byte is within 1 % of the text's byte-unigram entropy learned nothing more


def collapsed(run: RunData) -> bool:
    """True when a finished run predicts no better than letter frequencies: its validation bits per
    byte reach the byte-unigram entropy of the validation text (for a char-level tokenizer, the
    loss of the best context-free prediction)."""
    bpb = run.summary.get("val_bpb")
    entropy = ((run.summary.get("data") or {}).get("val") or {}).get("byte_entropy_bits")
    return run.status == "complete" and bpb is not None and bool(entropy) and bpb >= UNIGRAM_FRAC * entropy


def _split(variant: str) -> tuple[str, str]:
    scheme, _, lr = variant.rpartition("_lr")
    return (scheme, lr) if scheme else (variant, "")


def _lr_and_vocab(run: RunData) -> tuple[float, int]:
    """(train.lr, model.vocab_size) from the run's config; the lr from the variant name if it has none."""
    lr = (run.config.get("train") or {}).get("lr")
    return (float(lr if lr is not None else _split(run.variant)[1]),
            int((run.config.get("model") or {}).get("vocab_size") or 0))


def grid(groups: dict[str, list[RunData]]) -> tuple[dict[str, dict[float, list[RunData]]], dict[str, int]]:
    """scheme -> lr -> runs (schemes in the experiment's order, lrs ascending), and scheme -> vocab size."""
    out: dict[str, dict[float, list[RunData]]] = {}
    vocab: dict[str, int] = {}
    for variant, runs in groups.items():
        scheme = _split(variant)[0]
        for r in runs:
            lr, v = _lr_and_vocab(r)
            out.setdefault(scheme, {}).setdefault(lr, []).append(r)
            vocab[scheme] = max(vocab.get(scheme, 0), v)
    return {s: dict(sorted(cells.items())) for s, cells in out.items()}, vocab


def capped_loss(run: RunData, l0: float) -> float:
    """min(val loss, L0); a diverged or unfinished run counts as L0."""
    val = run.summary.get("val_loss")
    if run.status != "complete" or val is None or not np.isfinite(val):
        return l0
    return min(float(val), l0)


def sensitivity(cells: dict[float, list[RunData]], l0: float) -> Stat:
    """Wortsman et al.'s LR sensitivity, one value per seed present at every learning rate."""
    seeds = set.intersection(*({r.seed for r in runs} for runs in cells.values())) if cells else set()
    per_seed = []
    for seed in sorted(seeds):
        losses = [capped_loss(next(r for r in runs if r.seed == seed), l0) for runs in cells.values()]
        per_seed.append(float(np.mean(losses) - min(losses)))
    return stat(per_seed)


def summarize(groups: dict[str, list[RunData]]) -> list[dict]:
    """One dict per scheme: the loss at each lr, best lr, basin, divergences, LR sensitivity."""
    out = []
    cells_by_scheme, vocab = grid(groups)
    for scheme, cells in cells_by_scheme.items():
        l0 = math.log(vocab[scheme]) if vocab[scheme] > 1 else float("nan")
        per_lr = []
        for lr, runs in cells.items():
            done = stat(r.summary.get("val_loss") for r in runs if r.status == "complete")
            per_lr.append({"lr": lr, "mean": done.mean, "std": done.std, "values": done.values,
                           "runs": len(runs), "diverged": sum(r.status == "diverged" for r in runs),
                           "unigram": sum(collapsed(r) for r in runs),
                           "diverged_steps": [r.summary.get("diverged_step") for r in runs if r.status == "diverged"]})
        finite = [c for c in per_lr if np.isfinite(c["mean"]) and c["diverged"] == 0]
        best = min(finite, key=lambda c: c["mean"]) if finite else None
        basin = [c["lr"] for c in finite if best and c["mean"] <= best["mean"] + BASIN_NATS]
        first_bad = next((c["lr"] for c in per_lr if c["diverged"]), None)
        sens = sensitivity(cells, l0)
        out.append({"scheme": scheme, "l0": l0, "cells": per_lr,
                    "best_lr": best["lr"] if best else None, "best_loss": best["mean"] if best else None,
                    "basin": [min(basin), max(basin)] if basin else None, "basin_size": len(basin),
                    "lowest_diverging_lr": first_bad, "sensitivity": sens.mean, "sensitivity_std": sens.std,
                    "sensitivity_values": sens.values})
    overall = min((e["best_loss"] for e in out if e["best_loss"] is not None), default=None)
    for e in out:
        e["gap_to_overall_best"] = e["best_loss"] - overall if e["best_loss"] is not None else None
    return out


def _fmt_lr(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def _loss_table(entries: list[dict]) -> str:
    lrs = sorted({c["lr"] for e in entries for c in e["cells"]})
    lines = ["| scheme | " + " | ".join(f"lr {_fmt_lr(lr)}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for e in entries:
        by_lr = {c["lr"]: c for c in e["cells"]}
        cells = []
        for lr in lrs:
            c = by_lr.get(lr)
            if c is None:
                cells.append("")
                continue
            text = stat(c["values"]).fmt(3)
            if c["diverged"]:
                text += f" (diverged {c['diverged']}/{c['runs']})"
            if c["unigram"]:
                text += f" (unigram {c['unigram']}/{c['runs']})"
            cells.append(f"**{text}**" if lr == e["best_lr"] else text)
        lines.append(f"| {e['scheme']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _summary_table(entries: list[dict]) -> str:
    lines = ["| scheme | best lr | best val loss | vs the grid's best | basin (within 0.1 nats of best) | "
             "lowest lr with a divergence | LR sensitivity (mean ± std over seeds) |", "|---|---|---|---|---|---|---|"]
    for e in entries:
        if e["best_lr"]:
            best = f"{_fmt_lr(e['best_lr'])} | {e['best_loss']:.3f} | +{e['gap_to_overall_best']:.3f}"
        else:
            best = "n/a | n/a | n/a"
        basin = (f"{_fmt_lr(e['basin'][0])} .. {_fmt_lr(e['basin'][1])} ({e['basin_size']} lr)"
                 if e["basin"] else "none")
        bad = _fmt_lr(e["lowest_diverging_lr"]) if e["lowest_diverging_lr"] else "none"
        sens = (f"{e['sensitivity']:.3f} ± {e['sensitivity_std']:.3f}" if np.isfinite(e["sensitivity"]) else "n/a")
        lines.append(f"| {e['scheme']} | {best} | {basin} | {bad} | {sens} |")
    return "\n".join(lines)


def _figure(entries: list[dict]):
    from .plots import finish, plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    top = max((e["l0"] for e in entries if np.isfinite(e["l0"])), default=None)
    for i, e in enumerate(entries):
        color = f"C{i % 10}"
        ok = [c for c in e["cells"] if np.isfinite(c["mean"])]
        if ok:
            x = np.array([c["lr"] for c in ok])
            m, s = np.array([c["mean"] for c in ok]), np.array([c["std"] for c in ok])
            ax.plot(x, m, marker="o", color=color, label=e["scheme"])
            ax.fill_between(x, m - s, m + s, color=color, alpha=0.15, lw=0)
        bad = [c["lr"] for c in e["cells"] if c["diverged"]]
        if bad and top is not None:
            ax.scatter(bad, [top] * len(bad), marker="x", s=60, color=color, zorder=4)
    if top is not None:
        ax.axhline(top, color="grey", lw=0.8, ls="--")
        ax.annotate("ln V (uniform prediction); × = a seed diverged", (0.99, top), xycoords=("axes fraction", "data"),
                    ha="right", va="top", fontsize=8, color="grey")
    ax.set_xscale("log")
    finish(fig, ax, "Final validation loss vs learning rate (mean ± std over seeds)", "peak learning rate",
           "validation loss (nats/token)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    fig.tight_layout()
    return fig


def _claims(entries: list[dict]) -> list[Claim]:
    by = {e["scheme"]: e for e in entries}

    def sens(name: str) -> Stat:
        e = by[name]
        return Stat(e["sensitivity"], e["sensitivity_std"], e["sensitivity_values"])

    specs = [  # (claim, source, less sensitive scheme, more sensitive scheme)
        ("Pre-LN is less sensitive to the learning rate than Post-LN", "Xiong et al. 2020 (arXiv 2002.04745): "
         "Post-LN needs warmup and a smaller LR", "rmsnorm-pre", "rmsnorm-post"),
        ("QK-norm lowers LR sensitivity", "Wortsman et al. 2023 (arXiv 2309.14322), Dehghani et al. 2023: "
         "qk-layernorm removes attention-logit growth at high LR", "rmsnorm-pre-qknorm", "rmsnorm-pre"),
        ("Without normalization the model is more LR sensitive than Pre-LN", "seed 001: no-norm diverges "
         "where RMSNorm trains", "rmsnorm-pre", "none"),
    ]
    claims = []
    for text, source, low, high in specs:
        if low in by and high in by:
            a, b = sens(low), sens(high)
            claims.append(Claim(text + " (LR sensitivity on this grid)", source,
                                f"{low} {a.fmt(3)}, {high} {b.fmt(3)}", compare_lower(a, b)))
    dyts = [e for e in entries if e["scheme"].startswith("dyt") and e["best_lr"]]
    if dyts and "rmsnorm-pre" in by and by["rmsnorm-pre"]["best_lr"]:
        d, r = min(dyts, key=lambda e: e["best_loss"]), by["rmsnorm-pre"]
        dc = next(c for c in d["cells"] if c["lr"] == d["best_lr"])
        rc = next(c for c in r["cells"] if c["lr"] == r["best_lr"])
        a, b = Stat(dc["mean"], dc["std"], dc["values"]), Stat(rc["mean"], rc["std"], rc["values"])
        verdict = "not reproduced" if compare_lower(b, a) == "reproduced" else "reproduced"  # "matches" unless RMSNorm is clearly lower
        claims.append(Claim("DyT matches Pre-RMSNorm when each gets its best learning rate (within one seed std)",
                            "Zhu et al. 2025 (arXiv 2503.10622); against it, Qiu et al. 2026 (arXiv 2601.22966, "
                            "Table 1): DyT 2.216 vs RMSNorm 1.964 at 2B, best LR 5e-4, diverges at 1e-3",
                            f"best DyT: {d['scheme']} {a.fmt(3)} at lr {_fmt_lr(d['best_lr'])}; rmsnorm-pre {b.fmt(3)} "
                            f"at lr {_fmt_lr(r['best_lr'])}", verdict))
    return claims


@register_analysis("lr-sweep")
def lr_sweep(info: dict, groups: dict[str, list[RunData]]) -> Analysis:
    entries = summarize(groups)
    rows = common_rows(groups)  # one row per variant (scheme x lr); the per-scheme view is in the sections
    notes = [f"LR sensitivity (Wortsman et al. 2023): mean over the grid of min(val loss, ln V) minus the best, per "
             f"seed; a diverged run counts as ln V. Basin: learning rates whose mean loss is within {BASIN_NATS} "
             "nats of the scheme's best, no seed diverged.",
             "Sensitivity and basin are relative to the scheme's own best: a scheme that never trains well can look "
             "insensitive. Read them with 'vs the grid's best' and the unigram marks (a run whose val bits/byte "
             "reaches the validation text's byte-unigram entropy predicts letter frequencies only).",
             "One budget (steps, warmup, schedule) for every scheme: a scheme's basin is measured at this budget."]
    return Analysis(rows, _claims(entries), notes, {"lr_sweep.png": _figure(entries)},
                    sections={"Validation loss at each learning rate (best in bold)": _loss_table(entries),
                              "Stability basin per scheme": _summary_table(entries)},
                    data={"schemes": entries})
