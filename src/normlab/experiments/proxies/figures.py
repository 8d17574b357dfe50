"""proxies: final loss vs LR with qk-norm off beside on (the paper's Fig. 1, the lead figure), layer 0's largest
attention logit over training (Fig. 2), mean log Z over training in the weight-decay-0 arm with and without z-loss
(Figs. 3-4), and the final loss against the transplanted logit scale kappa (Fig. 10).

Each run is placed by its config: the kappa arm by model.attn.qk_scale, the weight-decay-0 arm by
train.weight_decay == 0, the rest is the LR grid (qk-norm off / on, z-loss on, independent decay 1e-4).
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


def key_of(run) -> tuple:
    """(arm, qk-norm, z-loss on, kappa) of a run; arm is 'kappa', 'wd0' or 'grid'."""
    model, train = run.config.get("model") or {}, run.config.get("train") or {}
    attn = model.get("attn") or {}
    kappa = float(attn.get("qk_scale") or 0.0)
    arm = "kappa" if kappa else ("wd0" if not train.get("weight_decay") else "grid")
    return arm, bool(attn.get("qk_norm")), bool(train.get("z_loss")), kappa


def curves(groups) -> dict[tuple, dict[float, list]]:
    """{(arm, qk, z, kappa): {lr: [runs of every seed]}}, LRs sorted."""
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
    arm, qk, z, kappa = key
    if arm == "kappa":
        return f"kappa {kappa:.0e}"
    prefix = "weight decay 0, " if arm == "wd0" else ""
    return f"{prefix}qk-norm {'on' if qk else 'off'}, z-loss {'on' if z else 'off'}"


def _ln_v(runs) -> float | None:
    return next((r.ln_vocab for r in runs if math.isfinite(r.ln_vocab)), None)


def _loss_vs_lr(cs):
    from normlab.report.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, arm in zip(axes, ("grid", "wd0")):
        entries = {k: c for k, c in cs.items() if k[0] == arm}
        for i, (key, cells) in enumerate(entries.items()):
            lrs = np.array(list(cells))
            vals = [stat(_m().capped(r) for r in runs) for runs in cells.values()]
            mean, sd = np.array([v.mean for v in vals]), np.array([v.std for v in vals])
            ax.errorbar(lrs, mean, yerr=sd, marker="o", ms=4, capsize=3, color=f"C{i}", label=_label(key))
            bad = [lr for lr, runs in cells.items() if any(r.status == "diverged" for r in runs)]
            ln_v = _ln_v(r for runs in cells.values() for r in runs)
            if bad and ln_v is not None:
                ax.scatter(bad, [ln_v] * len(bad), marker="x", s=40, color=f"C{i}", zorder=4)
        ln_v = _ln_v(r for c in entries.values() for runs in c.values() for r in runs)
        if ln_v is not None:
            ax.axhline(ln_v, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.set_title("LR grid (independent decay 1e-4, z-loss on)" if arm == "grid" else
                     "weight decay 0, qk-norm on (byte-level BPE vocab)")
        ax.grid(alpha=0.3)
        if entries:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("final val loss, capped at ln V (nats/token)")
    fig.suptitle("Final loss vs learning rate (Wortsman et al. 2023, Figs. 1 and 3)")
    fig.tight_layout()
    return fig


def _over_steps(ax, runs, key: str, color, label, log: bool = False):
    """Mean over seeds of a probe scalar against the step (non-finite values left out of the mean)."""
    series = [(r.probes.scalars.get(key) or {}) if r.probes else {} for r in runs]
    steps = sorted({s for d in series for s in d})
    if not steps:
        return
    values = np.array([[d.get(s, np.nan) for s in steps] for d in series], float)
    with np.errstate(all="ignore"):
        mean = np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=0)
    ax.plot(steps, mean, color=color, marker=".", label=label)
    if log:
        ax.set_yscale("log")


def _attn_logit_over_steps(cs):
    from normlab.report.plots import plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    for (arm, qk, z, kappa), cells in cs.items():
        if arm != "grid":
            continue
        colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(cells), 1))) if not qk else \
            plt.cm.autumn(np.linspace(0, 0.7, max(len(cells), 1)))
        for color, (lr, runs) in zip(colors, cells.items()):
            _over_steps(ax, runs, "logit_stats/attn_max/layer0", color,
                        f"qk-norm {'on' if qk else 'off'}, lr {_lr(lr)}", log=True)
    ax.set_xlabel("step")
    ax.set_ylabel("layer 0: largest attention logit")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Attention-logit growth (Wortsman et al. 2023, Fig. 2), mean over seeds")
    fig.tight_layout()
    return fig


def _log_z(cs):
    from normlab.report.plots import plt

    arms = {k: c for k, c in cs.items() if k[0] == "wd0"}
    if not arms:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    for ax, z in zip(axes, (False, True)):
        cells = next((c for k, c in arms.items() if k[2] == z), {})
        colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(cells), 1)))
        for color, (lr, runs) in zip(colors, cells.items()):
            _over_steps(ax, runs, "output_lse/mean", color, f"lr {_lr(lr)}")
        ln_v = _ln_v(r for runs in cells.values() for r in runs)
        if ln_v is not None:
            ax.axhline(ln_v, color="grey", lw=0.8, ls="--")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"weight decay 0, qk-norm on, z-loss {'on' if z else 'off'}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if cells:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("mean log Z of the output logits (dashed: ln V)")
    fig.suptitle("log Z over training (Wortsman et al. 2023, Figs. 3-4)")
    fig.tight_layout()
    return fig


def _kappa(cs):
    from normlab.report.plots import plt

    points = sorted((k[3], runs) for k, c in cs.items() if k[0] == "kappa" for runs in c.values())
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.4))
    vals = [stat(_m().capped(r) for r in runs) for _, runs in points]
    x = np.array([k for k, _ in points])
    ax.errorbar(x, [v.mean for v in vals], yerr=[v.std for v in vals], marker="o", capsize=3, color="C3")
    ln_v = _ln_v(r for _, runs in points for r in runs)
    if ln_v is not None:
        ax.axhline(ln_v, color="grey", lw=0.8, ls="--", label="ln V (uniform guess)")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("kappa (q and k forced to E[z^2] = kappa)")
    ax.set_ylabel("final val loss, capped at ln V")
    ax.set_title("The kappa transplant (Wortsman et al. 2023, Fig. 10)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figures(groups) -> dict:
    cs = curves(groups)
    out = {LEAD_FIGURE: (_loss_vs_lr(cs), "Final validation loss (capped at ln V, dashed grey; x = a seed diverged) "
                                          "against the peak LR, mean ± sd over seeds. Left: the LR grid, qk-norm off "
                                          "and on. Right: weight decay 0 with z-loss off and on (its own vocabulary, "
                                          "so its ln V differs)."),
           "proxies_attn_logit.png": (_attn_logit_over_steps(cs), "Layer 0's largest attention logit on the probe "
                                      "batch over training, one line per LR and qk-norm setting (mean over seeds, "
                                      "log scale); the claims read it at the last step.")}
    for name, fig, caption in (
            ("proxies_log_z.png", _log_z(cs), "Mean log Z of the output logits on the probe batch over training in "
             "the weight-decay-0 arm, one line per LR (mean over seeds); dashed grey: ln V, where it starts."),
            ("proxies_kappa.png", _kappa(cs), "Final validation loss against kappa, the scale q and k are forced "
             "to (mean ± sd over seeds).")):
        if fig is not None:
            out[name] = (fig, caption)
    return out


def _sensitivity_table(cs) -> str:
    lines = ["| setting | LR sensitivity (mean ± sd over seeds) | best LR | best loss | diverged runs |",
             "|---|---|---|---|---|"]
    for key, cells in cs.items():
        if key[0] == "kappa":
            continue
        means = {lr: stat(_m().capped(r) for r in runs).mean for lr, runs in cells.items()}
        best = min(means, key=means.get)
        div = sum(r.status == "diverged" for runs in cells.values() for r in runs)
        total = sum(len(runs) for runs in cells.values())
        lines.append(f"| {cell(_label(key))} | {sensitivity(cells).fmt(3)} | {_lr(best)} | {means[best]:.3f} | "
                     f"{div}/{total} |")
    return "\n".join(lines)


def _end_table(cs) -> str:
    """Per setting and LR: the capped loss, layer 0's attention logit and |log Z| at the last step."""
    m = _m()
    lines = ["| setting | lr | final loss (capped) | layer-0 max attention logit, last step | abs(log Z), last step |",
             "|---|---|---|---|---|"]
    for key, cells in cs.items():
        for lr, runs in cells.items():
            logit = stat(10 ** v for r in runs if (v := m.log10_attn_logit_end(r)) is not None)
            lines.append(f"| {cell(_label(key))} | {_lr(lr)} | {stat(m.capped(r) for r in runs).fmt(3)} | "
                         f"{logit.fmt(1)} | {stat(m.abs_log_z_end(r) for r in runs).fmt(2)} |")
    return "\n".join(lines)


def rows(groups):
    return common_rows(groups)[:2] + common_rows(groups)[3:]


def sections(groups) -> dict[str, str]:
    cs = curves(groups)
    return {"LR sensitivity per setting": _sensitivity_table(cs),
            "At the last step, per setting and learning rate (mean ± sd over seeds)": _end_table(cs)}


def data(groups) -> dict:
    cs = curves(groups)
    return {"sensitivity": [{"setting": _label(k), "mean": sensitivity(c).mean, "values": sensitivity(c).values}
                            for k, c in cs.items() if k[0] != "kappa"]}


def notes(groups) -> list[str]:
    return ["LR sensitivity is relative to each curve's own best: a setting that never trains well can look "
            "insensitive; read it with the loss table.",
            "One width (d 128, 0.4M parameters) stands in for the paper's 9.4M-1.2B; the gpu preset runs 7M-98M at "
            "four widths. The weight-decay-0 arm tokenizes the names with a byte-level BPE of 512 ids (most of them "
            "rare or unseen, as in the paper's 32k vocabulary): with the 28 characters of the char vocabulary, all "
            "frequent, log Z did not drift (see the experiment's description)."]
