"""Seed 002 (`ngpt`): nGPT vs Pre-Norm GPT, and the encoder-decoder in both modes.

Reads run directories only: metrics.jsonl (validation curve), summary.json (task accuracy written
at the end of seq2seq runs) and the last checkpoint's model.safetensors (eigen learning rates,
embedding row norms). The seed (tanisthahota/normalized-transformer README) claims "enhanced
stability" and "better convergence" without numbers; the nGPT paper (arXiv 2410.01131) reports
4-20x fewer steps to the same validation loss at 0.5B-1B scale.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..config import RunConfig, from_dict, read_yaml
from .analysis import Analysis, Row, common_rows, register_analysis
from .plots import color_of, finish
from .runs import RunData
from .stats import Claim, Stat, compare_lower, stat

BASELINE, NGPT = "gpt", "ngpt"


def _cfg(run: RunData) -> RunConfig | None:
    path = run.run_dir / "config.yaml"
    return from_dict(RunConfig, read_yaml(path), source=str(path)) if path.exists() else None


def _weights(run: RunData) -> dict:
    """The last checkpoint's tensors (name -> torch.Tensor), or {} when there is none."""
    from safetensors.torch import load_file

    from ..train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run.run_dir)
    return load_file(str(ckpt / "model.safetensors")) if ckpt is not None else {}


def steps_to_reach(val: list[tuple[int, float]], target: float) -> int | None:
    """First evaluated step whose validation loss is <= target (None if never)."""
    return next((s for s, v in sorted(val) if v <= target), None)


def row_norms(tensors: dict) -> dict[str, np.ndarray]:
    """Row norms of the input embedding (wte) and the output head (lm_head), one per token."""
    return {role: tensors[key].float().norm(dim=1).numpy()
            for role, key in (("input", "wte.weight"), ("output", "lm_head.weight")) if key in tensors}


@register_analysis("ngpt")
def ngpt(info: dict, groups: dict[str, list[RunData]]) -> Analysis:
    cfgs = {v: _cfg(rs[0]) for v, rs in groups.items()}
    lm = [v for v in groups if cfgs[v] is not None and cfgs[v].data.task == "lm"]
    s2s = [v for v in groups if v not in lm]
    weights = {v: [_weights(r) for r in rs] for v, rs in groups.items()}
    rows = common_rows(groups)
    notes: list[str] = []
    own = {r.seed: r.summary.get("val_loss") for r in groups.get(BASELINE, []) if r.summary.get("val_loss")}
    target = stat(own.values()).mean
    reach = {v: [steps_to_reach(r.val, own.get(r.seed, target)) for r in groups[v]] for v in lm}
    if np.isfinite(target):
        rows.append(Row(f"Steps to reach {BASELINE}'s final val loss (same seed)", {v: stat(reach[v]) for v in lm}, 0))
        rows.append(Row("Runs that never reach it", {v: stat([sum(s is None for s in reach[v])]) for v in lm}, 0))
        notes.append(f"Steps to reach are read at the evaluation steps (every {cfgs[lm[0]].train.eval_every} "
                     f"steps); the target of seed k is {BASELINE}-seed k's final validation loss "
                     f"(mean over seeds {target:.3f}).")
    rows.append(Row("Max grad norm", {v: stat(_max_metric(r, "grad_norm") for r in rs) for v, rs in groups.items()}, 2))
    rows += _accuracy_rows(groups, s2s) + _norm_rows(weights) + _eigen_rows(weights, cfgs)
    notes += [
        "Scale: about 0.2M parameters, 600 steps (enc-dec 300) on 5k names; the nGPT paper's 4-20x speedups "
        "are at 0.5B-1B parameters and 1k-4k context, so a verdict here is about this scale only.",
        "Eigen LRs are |alpha * alpha_init / base_scale| averaged over channels (initial value 0.05); "
        "embedding row norms are read from the last checkpoint (nGPT's are 1 by construction).",
        "Variants ending in _lr10x train at 10x the base LR; the stability claim compares how much each "
        "architecture's final val loss worsens there (verdict inconclusive within one seed std).",
    ]
    claims = _claims(groups, reach, s2s)
    figures = {"val_to_target.png": _val_figure(groups, lm, target),
               "embedding_norms.png": _norm_figure(weights)}
    if any(cfgs[v] is not None and cfgs[v].model.arch == "ngpt" for v in groups):
        figures["eigen_lrs.png"] = _eigen_figure(weights, cfgs)
    return Analysis(rows, claims, notes, figures)


def _max_metric(run: RunData, key: str) -> float | None:
    from ..train.rundir import read_metrics

    values = [m[key] for m in read_metrics(run.run_dir / "metrics.jsonl") if key in m]
    return max(values) if values else None


def _accuracy_rows(groups, s2s) -> list[Row]:
    if not s2s:
        return []
    return [Row("Held-out exact match (%)", {v: stat(_pct(r.summary.get("task_exact_match")) for r in groups[v])
                                             for v in s2s}, 1),
            Row("Held-out per-character accuracy (%)",
                {v: stat(_pct(r.summary.get("task_char_accuracy")) for r in groups[v]) for v in s2s}, 1)]


def _pct(x):
    return None if x is None else 100.0 * x


def _norm_rows(weights) -> list[Row]:
    rows = []
    for role in ("input", "output"):
        cells = {v: stat(float(row_norms(w)[role].mean()) for w in ws if role in row_norms(w))
                 for v, ws in weights.items()}
        rows.append(Row(f"{role.capitalize()} embedding row norm (mean)", cells, 3))
    return rows


def _eigen(weights_one: dict, cfg: RunConfig) -> dict[str, list[float]]:
    from ..model.ngpt import eigen_lrs

    return eigen_lrs(weights_one, cfg.model) if cfg.model.arch == "ngpt" else {}


_ALPHA = {"alpha_attn": "α_A", "alpha_mlp": "α_M", "alpha_cross": "α_C"}


def _label(key: str) -> str:
    stack, _, name = key.rpartition(".")
    return f"{stack + ' ' if stack else ''}{_ALPHA.get(name, name)}"


def _eigen_rows(weights, cfgs) -> list[Row]:
    per: dict[tuple[str, int], dict[str, Stat]] = {}
    for v, ws in weights.items():
        found = [_eigen(w, cfgs[v]) for w in ws if w and cfgs[v] is not None]
        for key in (found[0] if found else {}):
            for layer in range(len(found[0][key])):
                per.setdefault((key, layer), {})[v] = stat(f[key][layer] for f in found if key in f)
    return [Row(f"Eigen LR {_label(k)} (effective), layer {i}", cells, 3) for (k, i), cells in sorted(per.items())]


def _claims(groups, reach, s2s) -> list[Claim]:
    claims = []
    if BASELINE in groups and NGPT in groups:
        claims.append(_convergence_claim(groups, reach))
    hi = [v for v in groups if v.endswith("_lr10x")]
    if {f"{BASELINE}_lr10x", f"{NGPT}_lr10x"} <= set(hi) and BASELINE in groups and NGPT in groups:
        claims.append(_stability_claim(groups))
    if {"encdec", "encdec_ngpt"} <= set(s2s):
        claims.append(_encdec_claim(groups))
    return claims


def _val(groups, v) -> Stat:
    return stat(r.summary.get("val_loss") for r in groups[v])


def _convergence_claim(groups, reach) -> Claim:
    budget = max(r.summary.get("steps", 0) for r in groups[BASELINE])
    ngpt_steps = reach[NGPT]
    reached = [s for s in ngpt_steps if s is not None]
    speedup = [budget / s for s in reached]
    verdict = compare_lower(_val(groups, NGPT), _val(groups, BASELINE))
    if verdict == "reproduced" and len(reached) < len(ngpt_steps):
        verdict = "inconclusive"
    steps_txt = ", ".join("never" if s is None else f"step {s}" for s in ngpt_steps)
    ours = (f"final val loss gpt {_val(groups, BASELINE).fmt(3)}, ngpt {_val(groups, NGPT).fmt(3)}; ngpt reaches "
            f"gpt's final val loss (same seed): {steps_txt} (of {budget} steps)"
            + (f"; speedup {np.mean(speedup):.2f}x" if speedup else ""))
    return Claim("nGPT converges better: it reaches the baseline's final validation loss in fewer steps",
                 "'better convergence' (no number); paper: 4-20x fewer steps", ours, verdict)


def _stability_claim(groups) -> Claim:
    """Stability as robustness to a 10x larger LR: how much each loses (or whether it diverges)."""
    def loss_of(v):
        return np.array([r.summary.get("val_loss") if r.summary.get("val_loss") is not None else np.nan
                         for r in groups[v]], dtype=float)

    deltas = {a: loss_of(f"{a}_lr10x") - loss_of(a) for a in (BASELINE, NGPT)}
    diverged = {a: sum(r.status == "diverged" for r in groups[f"{a}_lr10x"]) for a in (BASELINE, NGPT)}
    if diverged[BASELINE] > diverged[NGPT]:
        verdict = "reproduced"
    elif diverged[NGPT] > diverged[BASELINE]:
        verdict = "not reproduced"
    else:
        verdict = compare_lower(stat(deltas[NGPT]), stat(deltas[BASELINE]))
    ours = (f"val loss change at 10x LR: gpt {stat(deltas[BASELINE]).fmt(3)}, ngpt {stat(deltas[NGPT]).fmt(3)}; "
            f"diverged gpt {diverged[BASELINE]}, ngpt {diverged[NGPT]}")
    return Claim("nGPT has enhanced stability: it loses less than the baseline when the LR is 10x larger",
                 "'enhanced stability' (no number)", ours, verdict)


def _encdec_claim(groups) -> Claim:
    exact = {v: stat(_pct(r.summary.get("task_exact_match")) for r in groups[v]) for v in ("encdec", "encdec_ngpt")}
    negate = lambda s: Stat(-s.mean, s.std, [-x for x in s.values])  # noqa: E731  (higher accuracy is better)
    verdict = compare_lower(negate(exact["encdec_ngpt"]), negate(exact["encdec"]))
    ours = (f"exact match normal {exact['encdec'].fmt(1)} %, nGPT {exact['encdec_ngpt'].fmt(1)} %; val loss normal "
            f"{_val(groups, 'encdec').fmt(3)}, nGPT {_val(groups, 'encdec_ngpt').fmt(3)}")
    return Claim("The encoder-decoder in nGPT mode performs better than with Pre-RMSNorm (reverse names)",
                 "claimed via 'improve training stability and performance' (no number)", ours, verdict)


def _val_figure(groups, lm, target):
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    order = list(groups)
    for v in lm:
        for i, r in enumerate(groups[v]):
            if r.val:
                ax.plot(*zip(*sorted(r.val)), color=color_of(v, order), lw=1.4, alpha=0.8,
                        label=v if i == 0 else None)
    if np.isfinite(target):
        ax.axhline(target, color="k", ls="--", lw=1, label=f"{BASELINE} final val loss (mean over seeds)")
    return finish(fig, ax, "Validation loss (decoder-only), one line per seed", "step", "loss (nats/token)")


def _norm_figure(weights):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    order = list(weights)
    for ax, role in zip(axes, ("input", "output")):
        norms = {v: np.concatenate(ns) for v, ws in weights.items()
                 if (ns := [row_norms(w)[role] for w in ws if role in row_norms(w)])}
        if not norms:
            continue
        everything = np.concatenate(list(norms.values()))
        lo, hi = float(everything.min()), float(everything.max())
        pad = max(0.05, 0.02 * (hi - lo))  # nGPT rows are all exactly 1: give the histogram a width
        bins = np.linspace(lo - pad, hi + pad, 41)
        for v, values in norms.items():
            ax.hist(values, bins=bins, alpha=0.5, color=color_of(v, order), label=v)
        ax.set_title(f"{role} embedding row norms ({'wte' if role == 'input' else 'lm_head'}), all seeds")
        ax.set_xlabel("L2 norm of a token's row")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig


def _eigen_figure(weights, cfgs):
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for v, ws in weights.items():
        found = [_eigen(w, cfgs[v]) for w in ws if w and cfgs[v] is not None]
        for key in (found[0] if found else {}):
            values = np.mean([f[key] for f in found], axis=0)
            ax.plot(range(len(values)), values, marker="o", label=f"{v}: {_label(key)}")
    ax.axhline(0.05, color="k", ls=":", lw=1, label="init 0.05")
    ax.set_title("Learned eigen learning rates |α| (effective, mean over channels and seeds)")
    ax.set_xlabel("layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
