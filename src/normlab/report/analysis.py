"""What a report says: a metrics table (mean ± std over seeds) and the verdict on each seed claim.

`ANALYSES` maps an experiment name to its analysis; any other experiment gets `generic`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .runs import RunData
from .stats import Claim, Stat, stat  # noqa: F401  (Claim re-exported for analyses)


@dataclass
class Row:
    metric: str
    cells: dict[str, Stat]
    digits: int = 2


@dataclass
class Analysis:
    rows: list[Row]
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)   # extra "name.png" -> matplotlib Figure
    sections: dict = field(default_factory=dict)  # extra "heading" -> Markdown body, after the results table
    data: dict = field(default_factory=dict)      # extra JSON-able results, written to results.json


def window(fn, runs: list[RunData], sl: slice) -> Stat:
    return stat(fn(r.loss[sl]) if np.isfinite(r.loss[sl]).any() else None for r in runs)


def nanmean(x):
    return float(np.nanmean(x))


def nanmax(x):
    return float(np.nanmax(x))


def common_rows(groups: dict[str, list[RunData]]) -> list[Row]:
    rows = [
        Row("Parameters", {v: stat(r.summary.get("params") for r in rs) for v, rs in groups.items()}, 0),
        Row("Final val loss", {v: stat(r.summary.get("val_loss") for r in rs) for v, rs in groups.items()}, 3),
        Row("Final val bits/byte", {v: stat(r.summary.get("val_bpb") for r in rs) for v, rs in groups.items()}, 3),
        Row("Diverged runs", {v: stat([sum(r.status == "diverged" for r in rs)]) for v, rs in groups.items()}, 0),
    ]
    return rows


def data_note(groups: dict[str, list[RunData]]) -> str:
    """Which text the runs trained and were validated on (from the first run's config.yaml)."""
    for rs in groups.values():
        for r in rs:
            if r.config:
                d = r.config.get("data", {})
                val = d.get("val_source") or "the source's validation split or a held-out fraction"
                return (f"Data: trained on {d.get('source')}, validated on {val}; tokenizer {d.get('tokenizer')}"
                        + (f" (vocab {d.get('bpe_vocab_size')})" if d.get("tokenizer") == "bpe" else "") + ".")
    return "Data: no run config found."


def generic(info: dict, groups: dict[str, list[RunData]]) -> Analysis:
    rows = common_rows(groups)
    rows.insert(1, Row("Avg train loss, last 10% of steps",
                       {v: stat(r.summary.get("final_train_loss") for r in rs) for v, rs in groups.items()}, 3))
    rows.insert(2, Row("Min train loss", {v: window(nanmin, rs, slice(None)) for v, rs in groups.items()}, 3))
    return Analysis(rows)


def nanmin(x):
    return float(np.nanmin(x))


ANALYSES: dict[str, Callable[[dict, dict], Analysis]] = {}


def register_analysis(experiment: str):
    """Decorator: `fn(info, groups) -> Analysis` becomes the analysis of that experiment's report."""
    def wrap(fn):
        ANALYSES[experiment] = fn
        return fn
    return wrap


def analyze(info: dict, groups: dict[str, list[RunData]]) -> Analysis:
    from . import lrsweep, ngpt, nonorm, normfree, prepost, sinks, zoo  # noqa: F401  (registers; one import each)

    return ANALYSES.get(info.get("name", ""), generic)(info, groups)
