"""Seed 000 (`sinks`): validation loss of RMSNorm / PreAffine / GatedNorm, peak activations, learned gains.

Seed numbers (its README): val loss PreAffine 0.0465 < baseline 0.0472 < GatedNorm 0.0496 nats/token
(MiniGPT ~13M, WikiText-2, GPT-2 tokenizer). Such losses are impossible for honest language
modelling: the seed pads every line to 128 tokens with pad = eos and counts the padding targets in
the loss (experiment.py: padding="max_length", nn.CrossEntropyLoss() without ignore_index), and most
WikiText-2 lines are short or empty, so it mostly measures predicting padding. We report that claim
as not reproduced, with our leakage bound. The paper's own claim (arXiv 2601.22966, Table 1) that
PreAffine and GatedNorm cut the peak |activation| is checked too. The weight figure is a minimal
reader of the final checkpoints (the probes branch will bring the full weight/sink analysis).
"""
from __future__ import annotations

import math

import numpy as np

from ..train.leakage import PLAUSIBLE_FRAC, plausibility_warning
from . import watch
from .analysis import Analysis, Row, common_rows, data_note, register_analysis
from .plots import plt
from .runs import RunData
from .stats import Claim, compare_lower, stat

SEED_VAL = {"preaffine": 0.0465, "baseline": 0.0472, "gatednorm": 0.0496}
GPT2_BYTES_PER_TOKEN = 4.5   # approx. GPT-2 BPE on English Wikipedia text (assumption, for the seed's bpb)


@register_analysis("sinks")
def sinks(info: dict, groups: dict[str, list[RunData]]) -> Analysis:
    g = groups
    rows = common_rows(g)
    rows.insert(3, Row("Val perplexity", {v: stat(r.summary.get("val_ppl") for r in rs) for v, rs in g.items()}, 1))
    rows.append(Row("Peak |residual activation| over training", {v: watch.peak(rs, "max_act") for v, rs in g.items()}, 1))
    rows.append(Row("Peak |attention logit| over training", {v: watch.peak(rs, "max_attn_logit") for v, rs in g.items()}, 1))
    rows.append(Row("Min |gain| over all norms (final)", {v: stat(_min_gain(r) for r in rs) for v, rs in g.items()}, 3))
    rows.append(Row("Max |l1 - 1| of PreAffine (final)", {v: stat(_l1_shift(r) for r in rs) for v, rs in g.items()}, 3))
    figures = {"stability_watch.png": watch.figure(g, "Watched maxima over training")}
    weights = _weights_figure(g)
    if weights is not None:
        figures["norm_weights.png"] = weights
    notes = [data_note(g), "Validation is a fixed set of batches of the validation text; bits/byte uses that split's bytes per "
             "token, so runs with different tokenizers compare.",
             "Seed numbers are nats/token with the GPT-2 tokenizer; ours use our own BPE (see bits/byte).",
             "WikiText-2 here: if the data note names the shared valid.txt/test.txt, those are the *tokenized* "
             "WikiText-2 v1 files (<unk>, @-@) and the train split was unavailable, so the model trains on the "
             "217k-word validation text and is evaluated on the test text: numbers are not comparable with "
             "published WikiText-2 results or the seed's (raw, train split)."]
    return Analysis(rows, _claims(g), notes, figures)


def _claims(g: dict[str, list[RunData]]) -> list[Claim]:
    claims = []
    val = {v: stat(r.summary.get("val_loss") for r in rs) for v, rs in g.items()}
    if set(SEED_VAL) <= set(g):
        seed = "preaffine 0.0465 < baseline 0.0472 < gatednorm 0.0496"
        ours = ", ".join(f"{v} {val[v].fmt(3)}" for v in SEED_VAL)
        claims.append(Claim("PreAffine reaches a lower val loss than the RMSNorm baseline", seed, ours,
                            compare_lower(val["preaffine"], val["baseline"])))
        claims.append(Claim("GatedNorm ends slightly above the baseline", seed, ours,
                            compare_lower(val["baseline"], val["gatednorm"])))
        claims.append(_seed_loss_claim(g, val))
        peaks = {v: watch.peak(g[v], "max_act") for v in SEED_VAL}
        both = [compare_lower(peaks[v], peaks["baseline"]) for v in ("preaffine", "gatednorm")]
        verdict = both[0] if both[0] == both[1] else ("not reproduced" if "not reproduced" in both else "inconclusive")
        claims.append(Claim("PreAffine and GatedNorm lower the peak |activation| (paper Table 1)",
                            "baseline 6000, +GA+PreAffine 640, +GA+GatedNorm 430 (2B model)",
                            ", ".join(f"{v} {p.fmt(1)}" for v, p in peaks.items()), verdict))
    return claims


def _seed_loss_claim(g, val) -> Claim:
    entropy = [r.summary.get("data", {}).get("val", {}).get("byte_entropy_bits") for rs in g.values() for r in rs]
    h0 = next((e for e in entropy if e), 4.4)
    seed_bpb = 0.0472 / (GPT2_BYTES_PER_TOKEN * math.log(2))
    warning = plausibility_warning(0.0472, seed_bpb, h0)
    ours = stat(r.summary.get("val_bpb") for rs in g.values() for r in rs)
    best = min((s.mean for s in val.values() if math.isfinite(s.mean)), default=float("nan"))
    return Claim("A ~13M GPT reaches val loss ~0.047 nats/token on WikiText-2",
                 f"0.0472 (≈ {seed_bpb:.3f} bits/byte at ~{GPT2_BYTES_PER_TOKEN} bytes/token) — ⚠ flagged by the "
                 f"leakage guard: under {PLAUSIBLE_FRAC:.0%} of H0 = {h0:.2f} bits/byte",
                 f"best {best:.3f} nats/token, {ours.fmt(3)} bits/byte; the seed counts padding targets "
                 f"(padding='max_length', pad = eos, no ignore_index)",
                 "not reproduced", note=warning or "")


def _norm_tensors(run: RunData) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    from ..train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run.run_dir)
    if ckpt is None:
        return {}
    weights = load_file(str(ckpt / "model.safetensors"))
    return {k: v for k, v in weights.items() if ".norm_" in f".{k}" or k.startswith("norm_")}


def _min_gain(run: RunData) -> float | None:
    gains = [np.abs(v).min() for k, v in _norm_tensors(run).items() if k.endswith(".weight") and v.ndim == 1]
    return float(min(gains)) if gains else None


def _l1_shift(run: RunData) -> float | None:
    """How far PreAffine's l1 moved from its init of 1 (None for other kinds)."""
    shifts = [np.abs(v - 1).max() for k, v in _norm_tensors(run).items() if k.endswith(".pre_scale")]
    return float(max(shifts)) if shifts else None


def _weights_figure(g: dict[str, list[RunData]]):
    """Per variant (seed 0): sorted |gain| of every norm (log scale), as the seed plots; PreAffine adds l1."""
    panels = []
    for v, rs in g.items():
        tensors = _norm_tensors(rs[0]) if rs else {}
        gains = {k[: -len(".weight")]: t for k, t in tensors.items() if k.endswith(".weight") and t.ndim == 1}
        pre = {k[: -len(".pre_scale")]: t for k, t in tensors.items() if k.endswith(".pre_scale")}
        if gains:
            panels.append((f"{v}: norm gains g", gains))
        if pre:
            panels.append((f"{v}: PreAffine l1", pre))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels):
        for name, t in curves.items():
            ax.plot(np.sort(np.abs(t))[::-1], lw=1.0, label=name)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("channel (sorted by |value|)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="x-small")
    fig.tight_layout()
    return fig
