"""Seed 004 (`normfree`): perplexity table, entropic overload per layer and the seed's claims checked.

Numbers from the seed's README (Jha & Reagen 2024, GPT-2 T=128 on CodeParrot, eval perplexity):
SM+LN+GELU 2.688, SM+LN+ReLU 2.757, SM+GELU (norm-free) 3.197, SM+ReLU (norm-free) 2.936.
"Early layers" = the first half of the blocks; overload = the share of heads whose mean entropy is
above probes.overload_threshold (3/4) of its maximum, at the last probe step.
"""
from __future__ import annotations

import math
import re

import numpy as np

from .analysis import Analysis, Row, common_rows, register_analysis
from .plots_probes import grouped_bars
from .probe_data import load_probes
from .runs import RunData
from .stats import Claim, Stat, compare_lower, stat

SEED_PPL = {"preln-gelu": 2.688, "preln-relu": 2.757, "normfree-gelu": 3.197, "normfree-relu": 2.936}


def _ppl(r: RunData) -> float | None:
    val = r.summary.get("val_loss")
    return math.exp(val) if val is not None and math.isfinite(val) else None


def overload_by_layer(r: RunData) -> dict[int, float]:
    """{layer index: overload fraction} at the run's last probe step ({} without probe data)."""
    probes = load_probes(r.run_dir)
    out = {}
    for key, series in (probes.scalars if probes else {}).items():
        m = re.fullmatch(r"attn_entropy/overload/layer(\d+)", key)
        if m and series:
            out[int(m.group(1))] = series[max(series)]
    return out


def normalized_entropy_by_layer(r: RunData) -> dict[int, float]:
    """{layer index: mean over heads of entropy / log(t+1)} at the last probe step (graded, unlike overload)."""
    probes = load_probes(r.run_dir)
    grid = probes.array("attn_entropy/per_head_norm") if probes else None
    return {} if grid is None else {i: float(np.nanmean(row)) for i, row in enumerate(grid)}


def _early(overload: dict[int, float]) -> float | None:
    if not overload:
        return None
    n_early = max(1, (max(overload) + 1) // 2)
    return float(np.mean([overload[i] for i in range(n_early) if i in overload]))


@register_analysis("normfree")
def normfree(info: dict, groups: dict[str, list[RunData]]) -> Analysis:
    g = groups
    ppl = {v: stat(_ppl(r) for r in rs) for v, rs in g.items()}
    base = ppl.get("preln-gelu")
    rel = {v: stat([100 * (s.mean / base.mean - 1)]) for v, s in ppl.items()} if base and base.values else {}
    over = {v: [overload_by_layer(r) for r in rs] for v, rs in g.items()}
    n_layers = max((max(o) + 1 for runs in over.values() for o in runs if o), default=0)
    rows = common_rows(g)[:2] + [Row("Perplexity exp(val loss)", ppl, 3),
                                 Row("Perplexity vs preln-gelu (%, of means)", rel, 1)]
    rows += [Row(f"Entropic overload, layer {i}", {v: stat(o.get(i) for o in runs) for v, runs in over.items()})
             for i in range(n_layers)]
    early = {v: stat(_early(o) for o in runs) for v, runs in over.items()}
    rows += [Row("Entropic overload, early layers (first half)", early)]
    norm_ent = {v: [normalized_entropy_by_layer(r) for r in rs] for v, rs in g.items()}
    rows += [Row(f"Entropy / max entropy, layer {i}", {v: stat(o.get(i) for o in runs) for v, runs in norm_ent.items()},
                 3) for i in range(n_layers)]
    early_norm = {v: stat(_early(o) for o in runs) for v, runs in norm_ent.items()}
    rows += common_rows(g)[2:]
    figures = {}
    if n_layers:
        means = {v: np.array([np.nanmean([o.get(i, np.nan) for o in runs] or [np.nan]) for i in range(n_layers)])
                 for v, runs in over.items()}
        figures["entropic_overload.png"] = grouped_bars(
            means, [f"layer {i}" for i in range(n_layers)],
            "Entropic overload: share of heads above 3/4 of max entropy (last probe step, mean over seeds)",
            "fraction of heads")
    claims = _claims(ppl, early, early_norm) if set(SEED_PPL) <= set(g) else []
    notes = ["Perplexity is exp(validation loss in nats per character) here, per token in the seed (BPE): "
             "compare the ordering and relative gaps, not the absolute values."]
    uniform = [v for v, runs in norm_ent.items() if runs and all(o and min(o.values()) >= 0.99 for o in runs)]
    if uniform:
        notes.append(f"Attention stayed near-uniform in {', '.join(uniform)} (entropy >= 0.99 of its maximum in "
                     "every layer and seed): overload is saturated there and cannot separate GELU from ReLU.")
    return Analysis(rows, claims, notes, figures)


def _fmt(stats: dict[str, Stat], digits: int = 3) -> str:
    return ", ".join(f"{v} {stats[v].fmt(digits)}" for v in SEED_PPL if v in stats)


def _claims(ppl: dict[str, Stat], early: dict[str, Stat], early_norm: dict[str, Stat]) -> list[Claim]:
    s = SEED_PPL
    gap = 100 * (1 - ppl["normfree-relu"].mean / ppl["normfree-gelu"].mean) if ppl["normfree-gelu"].values and \
        ppl["normfree-relu"].values else float("nan")
    both = _both(compare_lower(early["normfree-relu"], early["normfree-gelu"]),
                 compare_lower(early["preln-gelu"], early["normfree-gelu"]))
    return [
        Claim("Norm-free GELU is worse than norm-free ReLU (perplexity)",
              f"GELU {s['normfree-gelu']}, ReLU {s['normfree-relu']} (ReLU 8.2% lower)",
              f"GELU {ppl['normfree-gelu'].fmt(3)}, ReLU {ppl['normfree-relu'].fmt(3)} (ReLU {gap:.1f}% lower)",
              compare_lower(ppl["normfree-relu"], ppl["normfree-gelu"])),
        Claim("Early layers of norm-free GELU are in entropic overload (more heads near maximal entropy "
              "than norm-free ReLU and than Pre-LN GELU)", "shown in the seed's heatmaps (no number)",
              "early-layer overload: " + _fmt(early, 2) + "; early-layer entropy / max: " + _fmt(early_norm, 4),
              both),
        Claim("Removing LayerNorm costs perplexity (GELU and ReLU)",
              f"LN GELU {s['preln-gelu']} -> {s['normfree-gelu']}; LN ReLU {s['preln-relu']} -> {s['normfree-relu']}",
              _fmt(ppl), _both(compare_lower(ppl["preln-gelu"], ppl["normfree-gelu"]),
                               compare_lower(ppl["preln-relu"], ppl["normfree-relu"]))),
        Claim("With LayerNorm, GELU is (slightly) better than ReLU", f"GELU {s['preln-gelu']}, ReLU {s['preln-relu']}",
              f"GELU {ppl['preln-gelu'].fmt(3)}, ReLU {ppl['preln-relu'].fmt(3)}",
              compare_lower(ppl["preln-gelu"], ppl["preln-relu"])),
    ]


def _both(a: str, b: str) -> str:
    if a == b:
        return a
    return "not reproduced" if "not reproduced" in (a, b) else "inconclusive"
