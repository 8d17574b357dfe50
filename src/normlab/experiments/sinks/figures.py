"""sinks: loss, perplexity, peak activations, attention sinks and norm gains (from the probes, not the
checkpoints); the lead figure lines the variants up in Table 1's order of arXiv 2601.22966 with the
paper's numbers beside ours."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from normlab.report.metrics import final_val_loss, probe_peak
from normlab.report.tables import common_rows, metric_row, stat

LEAD_FIGURE = "sinks_table1.png"
# Table 1 of arXiv 2601.22966 (2B dense model): final loss and peak |activation| (None: not reported)
PAPER = {"baseline": (1.964, 6000), "ga": (1.957, 2800), "ga_preaffine": (1.954, 640), "ga_gatednorm": (1.951, 430),
         "dyt": (2.216, 73), "dyt_ga": (2.041, None), "dyt_ga_gateddyt": (1.969, None)}
ORDER = ["baseline", "preaffine", "gatednorm", "ga", "ga_preaffine", "ga_gatednorm", "dyt", "dyt_ga", "dyt_ga_gateddyt"]
PEAK_KEY = "massive_activations/top1/*"


def _m():
    from normlab.experiments.spec import load_module

    return load_module(Path(__file__).with_name("metrics.py"), "normlab.experiments._sinks.metrics")


def rows(groups):
    m = _m()
    out = common_rows(groups)
    out.insert(3, metric_row("Val perplexity", lambda r: r.summary.get("val_ppl"), groups, 1))
    out += [metric_row("Peak |residual activation| over training", lambda r: probe_peak(r, PEAK_KEY), groups, 1),
            metric_row("Peak attention logit over training", lambda r: probe_peak(r, "logit_stats/attn_max/*"), groups, 1),
            metric_row("Sink rate (heads with mean attention on position 0 > 0.3)", m.sink_rate, groups, 3),
            metric_row("Attention mass on position 0 (mean over heads)", m.first_position_share, groups, 3),
            metric_row("Min |gain| over the norms (final)",
                       lambda r: _min(r, "norm_weights/", "/min_abs", exclude="pre_scale"), groups, 3),
            metric_row("Max |l1 - 1| of PreAffine (final)", _l1_shift, groups, 3)]
    return out


def _min(run, prefix, suffix, exclude=""):
    probes = run.probes
    values = [s[max(s)] for k, s in (probes.scalars if probes else {}).items()
              if k.startswith(prefix) and k.endswith(suffix) and exclude not in k and s]
    return min(values) if values else None


def _l1_shift(run):
    probes = run.probes
    vectors = [v for k, v in (probes.arrays[max(probes.arrays)] if probes and probes.arrays else {}).items()
               if k.startswith("norm_weights/vec/") and k.endswith("pre_scale")]
    return float(max(abs(v - 1).max() for v in vectors)) if vectors else None


def _panel(ax, variants, groups, fn, title, ylabel, paper_index=None, log=False):
    stats = [stat(fn(r) for r in groups[v]) for v in variants]
    x = np.arange(len(variants))
    ax.errorbar(x, [s.mean for s in stats], yerr=[s.std for s in stats], fmt="o", capsize=3, color="C0",
                label="ours (mean ± sd)")
    if paper_index is not None:
        for i, v in enumerate(variants):
            value = PAPER.get(v, (None, None))[paper_index]
            if value is not None and np.isfinite(stats[i].mean):
                ax.annotate(f"paper {value:g}", (i, stats[i].mean), textcoords="offset points", xytext=(4, 6),
                            fontsize=7, color="C3")
    if log:
        ax.set_yscale("log")
    ax.set_xticks(x, variants, rotation=40, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)


def figures(groups) -> dict:
    from normlab.report.plots import plt

    variants = [v for v in ORDER if groups.get(v)] + [v for v in groups if v not in ORDER]
    if not variants:
        return {}
    m = _m()
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.6))
    _panel(axes[0], variants, groups, final_val_loss, "Final validation loss", "nats/token", paper_index=0)
    _panel(axes[1], variants, groups, lambda r: probe_peak(r, PEAK_KEY), "Peak |residual activation| over training",
           "max |h| (log)", paper_index=1, log=True)
    _panel(axes[2], variants, groups, m.sink_rate, "Sink rate (heads > 0.3 on position 0)", "share of heads")
    _panel(axes[3], variants, groups, m.first_position_share, "Attention mass on position 0", "mean over heads")
    fig.suptitle("Table 1 of arXiv 2601.22966 at CPU scale: loss, outliers and attention sinks per configuration "
                 "(the paper's 2B numbers in red)")
    fig.tight_layout()
    return {LEAD_FIGURE: (fig, "Per variant in Table 1's order: final validation loss, the peak |residual "
                               "activation| over training (log scale), the share of heads whose mean attention on "
                               "position 0 exceeds 0.3, and the mean attention on position 0 (mean ± sd over "
                               "seeds). Red labels are the paper's numbers for its 2B model: only the orderings "
                               "compare, not the values.")}


def notes(groups) -> list[str]:
    return ["Validation is a fixed set of batches of the validation text; bits/byte uses that split's bytes per "
            "token, so runs with different tokenizers compare.",
            "If the data source is the shared WikiText-2 valid/test files, those are the tokenized v1 files: "
            "numbers are not comparable with published WikiText-2 results or the seed's (raw, train split).",
            "One learning rate for every variant (the paper tuned DyT's to 5e-4 and DyT + GA's to 2e-3), and no "
            "FFN shrink for the gate parameters (the paper keeps parameter parity)."]
