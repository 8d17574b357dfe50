"""normfree: perplexity, overload and normalized entropy per layer, and the overload bar chart."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from normlab.report.metrics import layer_entropy_ratio
from normlab.report.tables import Row, common_rows, metric_row, stat

SEED_PPL = {"preln-gelu": 2.688, "preln-relu": 2.757, "normfree-gelu": 3.197, "normfree-relu": 2.936}


def _m():
    from normlab.experiments.spec import load_module

    return load_module(Path(__file__).with_name("metrics.py"), "normlab.experiments._normfree.metrics")


def _ppl(r):
    v = r.summary.get("val_loss")
    return math.exp(v) if r.status == "complete" and isinstance(v, (int, float)) and math.isfinite(v) else None


def rows(groups) -> list[Row]:
    m = _m()
    over = {v: [m.overload_by_layer(r) for r in rs] for v, rs in groups.items()}
    ratio = {v: [dict(enumerate(layer_entropy_ratio(r))) for r in rs] for v, rs in groups.items()}
    n_layers = max((max(o) + 1 for runs in over.values() for o in runs if o), default=0)
    out = common_rows(groups)[:2] + [metric_row("Perplexity exp(val loss)", _ppl, groups, 3)]
    out += [Row(f"Entropic overload, layer {i}", {v: stat(o.get(i) for o in runs) for v, runs in over.items()})
            for i in range(n_layers)]
    out += [Row(f"Entropy / max entropy, layer {i}", {v: stat(o.get(i) for o in runs) for v, runs in ratio.items()}, 4)
            for i in range(n_layers)]
    return out + common_rows(groups)[2:]


def figures(groups) -> dict:
    from normlab.report.plots_probes import grouped_bars

    m = _m()
    over = {v: [m.overload_by_layer(r) for r in rs] for v, rs in groups.items()}
    n_layers = max((max(o) + 1 for runs in over.values() for o in runs if o), default=0)
    if not n_layers:
        return {}
    means = {v: np.array([np.nanmean([o.get(i, np.nan) for o in runs] or [np.nan]) for i in range(n_layers)])
             for v, runs in over.items()}
    fig = grouped_bars(means, [f"layer {i}" for i in range(n_layers)],
                       "Entropic overload: share of heads above 3/4 of max entropy (last probe step)", "fraction of heads")
    return {"entropic_overload.png": (fig, "Share of heads whose mean entropy is at least 3/4 of its maximum, per layer "
                                           "(mean over seeds). The paper's finding: many such heads in the early layers "
                                           "of the norm-free GELU model.")}


def notes(groups) -> list[str]:
    notes = ["Perplexity is exp(validation loss in nats per token of this corpus: a bigram-backcopy symbol by default, "
             "whose exact floor the table gives, or a character), per BPE token in the source: compare the ordering and "
             "relative gaps, not the absolute values."]
    uniform = [v for v, rs in groups.items() if rs and all(min(layer_entropy_ratio(r) or [0]) >= 0.99 for r in rs)]
    if uniform:
        notes.append(f"Attention stayed near-uniform in {', '.join(uniform)} (entropy >= 0.99 of its maximum in every "
                     "layer and seed): overload is saturated there and cannot separate GELU from ReLU.")
    return notes
