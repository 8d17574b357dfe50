"""postln-depth: the per-block gradient norm at initialization (one line per placement and init), and the
final validation loss of every grid cell (depth x warmup, per placement)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from normlab.report.tables import common_rows, metric_row

LEAD_FIGURE = "init_grad_profile.png"


def _m():
    from normlab.experiments.spec import load_module

    return load_module(Path(__file__).with_name("metrics.py"), "normlab.experiments._postln_depth.metrics")


def _mean_profile(runs) -> np.ndarray | None:
    profiles = [p for r in runs if (p := _m().init_profile(r.metrics)) is not None]
    if not profiles or len({len(p) for p in profiles}) != 1:
        return None
    return np.exp(np.log(np.stack(profiles)).mean(0))   # geometric mean over seeds


def _profiles(groups):
    from normlab.report.plots import plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    shown = [("init-pre_L24", "Pre-LN, init 1/sqrt(d)", "C0", "-"), ("init-post_L24", "Post-LN, init 1/sqrt(d)", "C3", "-"),
             ("pre_L24_w0", "Pre-LN, init 0.02", "C0", "--"), ("post_L24_w0", "Post-LN, init 0.02", "C3", "--")]
    for variant, label, color, style in shown:
        prof = _mean_profile(groups.get(variant, []))
        if prof is not None:
            ax.plot(np.arange(len(prof)), prof, marker=".", color=color, linestyle=style, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("block")
    ax.set_ylabel("||grad|| of the block's parameters at init")
    ax.set_title("Gradient norm per block at initialization, 24 layers (geometric mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figures(groups) -> dict:
    if not any(v.startswith("init-") or v.endswith("_L24_w0") for v in groups):
        return {}
    return {LEAD_FIGURE: (_profiles(groups), "The gradient of the first backward, per block, before any update "
                                             "(the grad_norms probe at step 0). Xiong et al. (arXiv 2002.04745, "
                                             "Fig. 3): Post-LN's rises toward the output, Pre-LN's stays flat. "
                                             "Solid: the init of their analysis; dashed: the init the grid trains.")}


def rows(groups):
    m = _m()
    return common_rows(groups) + [metric_row("Init grad tilt (log10 last/first quarter)", m.init_grad_tilt, groups, 2),
                                  metric_row("Init last-block grad (log10)", m.init_last_grad_log10, groups, 2)]


def notes(groups) -> list[str]:
    return ["The init-* variants train one step only: their losses are the init's, their rows above are the "
            "gradient profile. The unigram loss of the names corpus is ~2.8 nats: a run ending there has stalled."]
