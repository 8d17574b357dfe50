"""dyt-regime: the squashing norms' loss relative to RMSNorm against the training-set size (the lead figure,
with the absolute losses and the saturated share beside it), and the tables behind it.

Runs are placed by their config (model.norm.kind) and the training bytes their summary reports; the
saturated share is squash_saturation/all at the last probe step.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from normlab.report.render import cell
from normlab.report.tables import common_rows, stat

LEAD_FIGURE = "dyt_regime.png"
SQUASHERS = ("dyt", "derf")
SATURATION_KEYS = ("squash_saturation/all",)


def _m():
    from normlab.experiments.spec import load_module

    return load_module(Path(__file__).with_name("metrics.py"), "normlab.experiments._dyt_regime.metrics")


def saturation(run) -> float | None:
    probes = run.probes
    for key in SATURATION_KEYS:
        series = (probes.scalars.get(key) or {}) if probes is not None else {}
        if series:
            v = series[max(series)]
            return v if math.isfinite(v) else None
    return None


def table(groups) -> dict[int, dict[int, list]]:
    """{training bytes: {seed: runs of every kind}}."""
    m = _m()
    out: dict[int, dict[int, list]] = {}
    for runs in groups.values():
        for r in runs:
            n = m.train_bytes(r)
            if n is not None:
                out.setdefault(n, {}).setdefault(r.seed, []).append(r)
    return dict(sorted(out.items()))


def _kinds(groups) -> list[str]:
    m = _m()
    found = {m.kind_of(r) for rs in groups.values() for r in rs}
    return ["rmsnorm", *[k for k in SQUASHERS if k in found], *sorted(found - {"rmsnorm", *SQUASHERS})]


def _per_kind(t, kind, fn):
    """[(bytes, Stat over seeds of fn(run of `kind`))] per training-set size."""
    m = _m()
    return [(n, stat(fn(r) for runs in seeds.values() for r in runs if m.kind_of(r) == kind)) for n, seeds in t.items()]


def _lead(groups):
    from normlab.report.plots import plt

    m, t = _m(), table(groups)
    kinds = _kinds(groups)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for i, kind in enumerate(k for k in kinds if k != "rmsnorm"):
        pts = [(n, stat(100 * v for runs in seeds.values() if (v := m.relative(runs, kind)) is not None))
               for n, seeds in t.items()]
        x = np.array([n for n, _ in pts])
        axes[0].errorbar(x, [s.mean for _, s in pts], yerr=[s.std for _, s in pts], marker="o", capsize=3,
                         color=f"C{i + 1}", label=kind)
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_ylabel("val loss vs RMSNorm (%)")
    axes[0].set_title("Relative loss (< 0: better than RMSNorm)")
    for i, kind in enumerate(kinds):
        pts = _per_kind(t, kind, m.final_loss)
        axes[1].errorbar([n for n, _ in pts], [s.mean for _, s in pts], yerr=[s.std for _, s in pts], marker="o",
                         capsize=3, color=f"C{i}", label=kind)
    axes[1].set_ylabel("final val loss (nats/token)")
    axes[1].set_title("Validation loss")
    for i, kind in enumerate(kinds):
        pts = [(n, s) for n, s in _per_kind(t, kind, saturation) if np.isfinite(s.mean)]
        if pts:
            axes[2].errorbar([n for n, _ in pts], [100 * s.mean for _, s in pts], yerr=[100 * s.std for _, s in pts],
                             marker="o", capsize=3, color=f"C{i}", label=kind)
    axes[2].set_ylabel("saturated share |alpha x| > 2 (%)")
    axes[2].set_title("Saturation at the end of training")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("training-set size (bytes = char tokens)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("When does removing the norm help? (Verma 2026: -27 % at 1M tokens, +19 % at 118M for 64M params)")
    fig.tight_layout()
    return fig


def figures(groups) -> dict:
    if not table(groups):
        return {}
    return {LEAD_FIGURE: (_lead(groups), "Left: each squashing norm's final validation loss relative to RMSNorm on "
                                         "the same seed and training set (mean ± sd over seeds), against the "
                                         "training-set size at a fixed step count (small sets are repeated many "
                                         "times). Middle: the losses. Right: the share of DyT / Derf arguments "
                                         "beyond |2| on the probe batch. The paper's sign flip is the left panel "
                                         "crossing 0 upward.")}


def _table_md(groups) -> str:
    m, t = _m(), table(groups)
    kinds = _kinds(groups)
    head = ["training bytes", "tokens / parameter"] + [f"{k} val loss" for k in kinds] + \
        [f"{k} vs RMSNorm" for k in kinds if k != "rmsnorm"] + [f"{k} saturated" for k in kinds if k != "rmsnorm"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, seeds in t.items():
        params = next((r.summary.get("params") for runs in seeds.values() for r in runs if r.summary.get("params")), 0)
        row = [f"{n:,}", f"{n / params:.3f}" if params else "n/a"]
        row += [stat(m.final_loss(r) for runs in seeds.values() for r in runs if m.kind_of(r) == k).fmt(3) for k in kinds]
        row += [stat(100 * v for runs in seeds.values() if (v := m.relative(runs, k)) is not None).fmt(1) + " %"
                for k in kinds if k != "rmsnorm"]
        row += [stat(100 * s for runs in seeds.values() for r in runs if m.kind_of(r) == k and
                     (s := saturation(r)) is not None).fmt(1) + " %" for k in kinds if k != "rmsnorm"]
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines)


def rows(groups):
    return common_rows(groups)[:2] + common_rows(groups)[3:]


def sections(groups) -> dict[str, str]:
    return {"Loss, relative loss and saturation per training-set size (mean ± sd over seeds)": _table_md(groups)}


def notes(groups) -> list[str]:
    return ["Tokens per parameter counts the training set's tokens (char tokens = bytes here), not tokens seen: "
            "every run takes the same steps, so the smallest set is seen hundreds of times, as the paper's 1M-token "
            "runs are (~160 times).",
            "The paper's baseline is LayerNorm; RMSNorm is this lab's default and the paper's control."]
