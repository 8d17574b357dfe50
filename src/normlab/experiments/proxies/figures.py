"""proxies: final loss vs LR per width with qk-norm off beside on (the paper's Fig. 1, the lead figure), the
peak attention logit vs LR, mean log Z over training, LR sensitivity vs width, the warmup / decay sub-grids.

Each run is placed by its config (width = model.d_model, qk-norm, z-loss weight, LR); the sub-grids by
the variant's name (warmup25_*, coupled_*), the main grid being "default".
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from normlab.report.render import cell
from normlab.report.tables import common_rows, stat

LEAD_FIGURE = "proxies_loss_vs_lr.png"


def _m():
    from normlab.experiments.spec import load_module

    return load_module(Path(__file__).with_name("metrics.py"), "normlab.experiments._proxies.metrics")


def recipe_of(variant: str) -> str:
    head = variant.split("_", 1)[0]
    return head if head in ("warmup25", "coupled") else "default"


def key_of(run) -> tuple:
    """(recipe, width, qk-norm, z-loss on) of a run."""
    model, train = run.config.get("model") or {}, run.config.get("train") or {}
    return (recipe_of(run.variant), int(model.get("d_model") or 0), bool((model.get("attn") or {}).get("qk_norm")),
            bool(train.get("z_loss")))


def curves(groups) -> dict[tuple, dict[float, list]]:
    """{(recipe, width, qk, z): {lr: [runs of every seed]}}, LRs sorted."""
    out: dict[tuple, dict[float, list]] = {}
    for runs in groups.values():
        for r in runs:
            out.setdefault(key_of(r), {}).setdefault(_m().lr_of(r), []).append(r)
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def _seeds(cells: dict[float, list]) -> list[int]:
    return sorted({r.seed for runs in cells.values() for r in runs})


def sensitivity(cells: dict[float, list]):
    m = _m()
    return stat(m.sensitivity_of([r for runs in cells.values() for r in runs if r.seed == s]) for s in _seeds(cells))


def _lr(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def _label(key) -> str:
    recipe, width, qk, z = key
    prefix = "" if recipe == "default" else recipe + " "
    return f"{prefix}d{width} qk-norm {'on' if qk else 'off'}, z-loss {'on' if z else 'off'}"


def _draw_lr_curves(ax, entries: dict, value, ln_v: float | None, log: bool = False):
    """One line per entry {label: (cells, colour, style)}: mean ± sd over seeds of value(run) at each LR."""
    for label, (cells, color, style) in entries.items():
        lrs = np.array(list(cells))
        vals = [stat(value(r) for r in runs) for runs in cells.values()]
        mean, sd = np.array([v.mean for v in vals]), np.array([v.std for v in vals])
        ok = np.isfinite(mean)
        ax.plot(lrs[ok], mean[ok], marker="o", ms=3, color=color, ls=style, label=label)
        if style == "-":
            ax.fill_between(lrs[ok], (mean - sd)[ok], (mean + sd)[ok], color=color, alpha=0.15, lw=0)
        bad = [lr for lr, runs in cells.items() if any(r.status == "diverged" for r in runs)]
        if bad and ln_v is not None and not log:
            ax.scatter(bad, [ln_v] * len(bad), marker="x", s=40, color=color, zorder=4)
    ax.set_xscale("log")
    if log:
        ax.set_yscale("log")
    if ln_v is not None and not log:
        ax.axhline(ln_v, color="grey", lw=0.8, ls="--")


def _ln_v(groups) -> float | None:
    return next((r.ln_vocab for rs in groups.values() for r in rs if math.isfinite(r.ln_vocab)), None)


def _widths(cs) -> list[int]:
    return sorted({k[1] for k in cs if k[0] == "default"})


def _loss_vs_lr(groups, cs):
    from normlab.report.plots import plt

    widths, ln_v = _widths(cs), _ln_v(groups)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(widths), 1)))
    for ax, qk in zip(axes, (False, True)):
        entries = {}
        for color, w in zip(colors, widths):
            for z, style in ((True, "-"), (False, ":")):
                if ("default", w, qk, z) in cs:
                    entries[f"d{w}" + ("" if z else ", no z-loss")] = (cs[("default", w, qk, z)], color, style)
        _draw_lr_curves(ax, entries, _m().capped, ln_v)
        ax.set_title(f"qk-norm {'on' if qk else 'off'}")
        ax.set_xlabel("peak learning rate")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final val loss, capped at ln V (nats/token)")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle("Final loss vs learning rate per width (Wortsman et al. 2023, Fig. 1)")
    fig.tight_layout()
    return fig


def _attn_logit_vs_lr(groups, cs):
    from normlab.report.plots import plt

    widths = _widths(cs)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(widths), 1)))
    value = lambda r: 10 ** v if (v := _m().log10_peak_attn_logit(r)) is not None else None  # noqa: E731
    for ax, qk in zip(axes, (False, True)):
        entries = {f"d{w}": (cs[("default", w, qk, True)], c, "-") for c, w in zip(colors, widths)
                   if ("default", w, qk, True) in cs}
        _draw_lr_curves(ax, entries, value, None, log=True)
        ax.set_title(f"qk-norm {'on' if qk else 'off'} (z-loss on)")
        ax.set_xlabel("peak learning rate")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("largest attention logit over training")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle("Attention-logit growth vs learning rate (Wortsman et al. 2023, Fig. 2)")
    fig.tight_layout()
    return fig


def _log_z(groups, cs):
    from normlab.report.plots import plt

    widths = _widths(cs)
    if not widths:
        return None
    w = widths[-1]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    for ax, z in zip(axes, (False, True)):
        cells = cs.get(("default", w, True, z), {})
        colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(cells), 1)))
        for color, (lr, runs) in zip(colors, cells.items()):
            series = [(r.probes.scalars.get("output_lse/mean") or {}) if r.probes else {} for r in runs]
            steps = sorted({s for d in series for s in d})
            if not steps:
                continue
            values = np.array([[d.get(s, np.nan) for s in steps] for d in series], float)
            with np.errstate(all="ignore"):
                mean = np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=0)
            ax.plot(steps, mean, color=color, marker=".", label=f"lr {_lr(lr)}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"d{w}, qk-norm on, z-loss {'on' if z else 'off'}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean log Z of the output logits")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle("log Z over training (Wortsman et al. 2023, Fig. 4: it drifts without z-loss, stays near 0 with it)")
    fig.tight_layout()
    return fig


def _sensitivity_vs_width(cs):
    from normlab.report.plots import plt

    fig, ax = plt.subplots(figsize=(7, 4.4))
    for i, (qk, z) in enumerate(((False, True), (True, True), (False, False), (True, False))):
        pts = [(w, sensitivity(cells)) for (rec, w, q, zz), cells in cs.items() if rec == "default" and q == qk
               and zz == z]
        if not pts:
            continue
        x = np.array([w for w, _ in pts])
        mean, sd = np.array([s.mean for _, s in pts]), np.array([s.std for _, s in pts])
        ax.errorbar(x, mean, yerr=sd, marker="o", capsize=3, color=f"C{i}", ls="-" if z else ":",
                    label=f"qk-norm {'on' if qk else 'off'}, z-loss {'on' if z else 'off'}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d_model")
    ax.set_ylabel("LR sensitivity (nats/token)")
    ax.set_title("LR sensitivity vs width (Wortsman et al. 2023, Fig. 1 bottom)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _subgrids(groups, cs):
    from normlab.report.plots import plt

    recipes = {"default": ("independent decay 1e-4, warmup 5 %", "C0"), "warmup25": ("warmup 25 %", "C1"),
               "coupled": ("coupled decay 0.1 (torch AdamW)", "C3")}
    entries = {}
    for (rec, w, qk, z), cells in cs.items():
        if rec in recipes and not qk and z and any(k[0] != "default" and k[1] == w for k in cs):
            entries[f"d{w}: {recipes[rec][0]}"] = (cells, recipes[rec][1], "-")
    if len(entries) < 2:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.4))
    _draw_lr_curves(ax, entries, _m().capped, _ln_v(groups))
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("final val loss, capped at ln V")
    ax.set_title("Warmup and weight decay (qk-norm off, z-loss on; Wortsman et al. 2023, Figs. 5-6)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figures(groups) -> dict:
    cs = curves(groups)
    out = {LEAD_FIGURE: (_loss_vs_lr(groups, cs), "Final validation loss (capped at ln V, dashed grey; x = a seed "
                                                  "diverged) against the peak LR, one curve per width, z-loss on "
                                                  "(solid, ± sd over seeds) and off (dotted); qk-norm off on the "
                                                  "left, on on the right. The paper: without qk-norm the high-LR "
                                                  "end rises toward the init loss, more so for larger models."),
           "proxies_attn_logit_vs_lr.png": (_attn_logit_vs_lr(groups, cs), "Largest attention logit over every "
                                            "probe step and layer, against the LR, per width (mean ± sd over "
                                            "seeds, log scale)."),
           "proxies_sensitivity_vs_width.png": (_sensitivity_vs_width(cs), "LR sensitivity (mean over the LR "
                                                "grid of min(loss, ln V) minus the best) against width, mean ± "
                                                "sd over seeds.")}
    log_z = _log_z(groups, cs)
    if log_z is not None:
        out["proxies_log_z.png"] = (log_z, "Mean log Z of the output logits on the probe batch over training, "
                                           "largest width, qk-norm on, one line per LR (mean over seeds).")
    sub = _subgrids(groups, cs)
    if sub is not None:
        out["proxies_subgrids.png"] = (sub, "The warmup and weight-decay sub-grids against the main grid's curve "
                                            "at the same width (qk-norm off, z-loss on).")
    return out


def _sensitivity_table(cs) -> str:
    lines = ["| setting | LR sensitivity (mean ± sd over seeds) | best LR | best loss | diverged runs |",
             "|---|---|---|---|---|"]
    for key, cells in cs.items():
        means = {lr: stat(_m().capped(r) for r in runs).mean for lr, runs in cells.items()}
        best = min(means, key=means.get)
        div = sum(r.status == "diverged" for runs in cells.values() for r in runs)
        total = sum(len(runs) for runs in cells.values())
        lines.append(f"| {cell(_label(key))} | {sensitivity(cells).fmt(3)} | {_lr(best)} | {means[best]:.3f} | "
                     f"{div}/{total} |")
    return "\n".join(lines)


def _loss_table(cs) -> str:
    lrs = sorted({lr for cells in cs.values() for lr in cells})
    lines = ["| setting | " + " | ".join(f"lr {_lr(lr)}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for key, cells in cs.items():
        row = [stat(_m().capped(r) for r in cells[lr]).fmt(3) if lr in cells else "" for lr in lrs]
        lines.append(f"| {cell(_label(key))} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def rows(groups):
    return common_rows(groups)[:2] + common_rows(groups)[3:]


def sections(groups) -> dict[str, str]:
    cs = curves(groups)
    return {"LR sensitivity per setting": _sensitivity_table(cs),
            "Final val loss (capped at ln V) at each learning rate": _loss_table(cs)}


def data(groups) -> dict:
    cs = curves(groups)
    return {"sensitivity": [{"setting": _label(k), "mean": sensitivity(c).mean, "values": sensitivity(c).values}
                            for k, c in cs.items()]}


def notes(groups) -> list[str]:
    return ["LR sensitivity is relative to each curve's own best: a setting that never trains well can look "
            "insensitive; read it with the loss table.",
            "Widths 32-96 (25k-0.4M parameters) stand in for the paper's 9.4M-1.2B; the gpu preset runs 7M-98M. "
            "200 steps at 256 tokens each is a short schedule: the paper's output-logit divergence appears late "
            "in long runs, so its claim carries a precondition."]
