"""The report of `normlab inspect`: report.md and report.html (report/render.py's page) with figures drawn by
the report's own plotting functions (report/plots_probes.py), PNGs beside them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..report.markdown import cell


def _n(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return f"{x:.{digits}g}" if abs(x) < 1e5 else f"{x:.3g}"


def _figures(result: dict, m: dict) -> list[tuple[str, str, object]]:
    """(file, caption, matplotlib figure) for what the data has."""
    from ..report import plots_probes as pp

    name = result["model"]
    s = m["summary"]
    layers = result["layers"]
    labels = [r["layer"] for r in layers]
    ticks = [lab.replace("layer", "") for lab in labels]
    T, base = result["seq_len"], result["detections"]["uniform_baseline"]
    out = []
    if "per_head" in s["attn_sinks"]:
        out.append(("inspect_sinks.png",
                    f"Mean attention on position 0 per layer and head over {result['n_seqs']} windows of T = {T} "
                    f"tokens. A head that attends uniformly puts H_T/T = {base:.3f} there; a sink head is above "
                    "0.3 (Gu et al. 2024).",
                    _grid(s["attn_sinks"]["per_head"], f"{name}: attention mass on position 0", "magma", labels,
                          "mean A[t, 0]", scale=(0.0, 1.0))))
    out.append(("inspect_sink_rate.png",
                "Per layer: the mean attention on position 0 over heads, the share of heads above 0.3 (the sink "
                f"rate), and the uniform baseline H_T/T at T = {T}.",
                pp.grouped_bars({"mean A[t, 0]": np.array([r["sink_mass"] or 0 for r in layers]),
                                 "sink rate (> 0.3)": np.array([r["sink_rate"] or 0 for r in layers]),
                                 f"uniform H_T/T = {base:.3f}": np.full(len(layers), base)},
                                ticks, "Attention sinks per layer", "share / mass")))
    mass = s["massive_activations"]
    if "top3" in mass:
        out.append(("inspect_massive.png",
                    "Top-3 and median |h| of the residual stream after each block (Sun et al. 2024). Their massive "
                    "activations are |h| > 100 and about 1000x the median, at the first token, in a few channels.",
                    pp.massive_profile({name: (labels, mass["top3"], mass["median"])},
                                       "Massive activations: top-3 and median |h| per layer")))
    fig = pp.grouped_bars({"top |h| / median |h|": np.array([r["top_over_median"] or 0 for r in layers]),
                           "top channel / median channel (mean |h|)": np.array([r["channel_ratio"] or 0
                                                                                 for r in layers])},
                          ticks, "Residual-stream ratios per layer", "ratio")
    crit = result["criteria"]
    _log(fig, {f"Sun et al.: ~{crit['sun_ratio']:g}x": crit["sun_ratio"],
               f"residual sink: {crit['residual_sink_ratio']:g}x": crit["residual_sink_ratio"]})
    out.append(("inspect_ratios.png",
                "Per layer: the largest |h| over the median |h| (Sun et al.'s criterion: about 1000x) and the "
                "largest channel's mean |h| over the median channel's (a residual sink at 10x or more).", fig))
    vectors = {k[4:]: v for k, v in s["resid_channels"].items() if k.startswith("vec/")}
    if vectors:
        out.append(("inspect_resid_channels.png",
                    "Mean |h| of each residual channel after each block, by channel index (left) and sorted "
                    "(right). A channel far above the rest is a residual sink (Qiu et al. 2026).",
                    pp.norm_weight_profiles({name: vectors}, "Mean |h| per residual channel")))
    if "per_head_norm" in s["attn_entropy"]:
        out.append(("inspect_entropy.png",
                    "Attention entropy per head over its maximum log(t+1) (1 = uniform attention, 0 = one key).",
                    _grid(s["attn_entropy"]["per_head_norm"], f"{name}: attention entropy over its maximum",
                          "viridis", labels, "entropy / log(t+1)", scale=(0.0, 1.0))))
    kurt = {k: np.array([r[f"kurtosis_{k}"] or 0 for r in layers]) for k in ("resid", "attn", "mlp")}
    fig = pp.grouped_bars(kurt, ticks, "Kurtosis across channels per layer", "kurtosis")
    _log(fig, {"Gaussian: 3": 3.0})
    out.append(("inspect_kurtosis.png", "Mean over tokens of the kurtosis across channels of the residual stream "
                "and of each sublayer's output (3 for Gaussian channels, d_model at most).", fig))
    if m["value_drain"] is not None:
        out.append(("inspect_value_drain.png",
                    "Value drain per layer and (key-value) head: ||v_0|| / mean over t >= 1 of ||v_t||. A sink "
                    "head whose v_0 is small adds almost nothing when it attends to position 0 (Guo et al. 2024).",
                    _grid(m["value_drain"], f"{name}: value drain", "cividis", labels, "||v_0|| / mean ||v_t||")))
    return out


def _grid(grid: np.ndarray, title: str, cmap: str, labels: list[str], cbar: str, scale=None):
    """One layers x heads heatmap sized to its grid (report/plots_probes.py paints the cells; values written in
    them up to 16 x 16); `scale` fixes the colour range (shares and probabilities: 0 to 1)."""
    import matplotlib.pyplot as plt

    from ..report import plots_probes as pp

    n_layers, n_heads = grid.shape
    fig, ax = plt.subplots(figsize=(max(4.5, 0.42 * n_heads + 2.2), max(2.6, 0.32 * n_layers + 1.3)),
                           layout="constrained")
    finite = grid[np.isfinite(grid)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lo, hi = scale or ((lo - 0.5, hi + 0.5) if hi == lo else (lo, hi))
    image = pp._heatmap(ax, grid, cmap, lo, hi, labels, annotate=n_layers <= 16 and n_heads <= 16)
    ax.set_xlabel("head", fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.9, aspect=30).set_label(cbar, fontsize=8)
    return fig


def _log(fig, lines: dict[str, float] | None = None) -> None:
    """A log y axis from 1 up (bars of ratios and kurtoses, which are >= 1 for real data), with reference lines."""
    ax = fig.axes[0]
    for i, (label, y) in enumerate((lines or {}).items()):
        ax.axhline(y, color="k", ls=("--", ":")[i % 2], lw=0.9, label=label)
    if lines:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    if ax.dataLim.y1 >= 10:
        ax.set_yscale("log")
        ax.set_ylim(bottom=1)


def _setup(result: dict) -> str:
    sha = "; ".join(f"{k} sha256 {v[:16]}…" for k, v in result["weights_sha256"].items()) or "n/a (hub cache)"
    rows = [("model", result["model"]), ("loaded from", f"{result['source']}: {result['where']}"),
            ("hub revision", result["revision"] or "n/a"), ("weights", sha),
            ("architecture", f"{result['architecture']} ({result['model_type']}), {result['parameters']:,} parameters"),
            ("taps", f"blocks {result['layers_tapped']}; v from {result['value_tap'] or 'not exposed'}"),
            ("text", result["text"]), ("tokens read", f"{result['text_tokens']:,}"),
            ("windows", f"{result['n_seqs']} of {result['n_seqs_asked']} asked, T = {result['seq_len']} tokens, "
                        "no BOS"),
            ("mean next-token loss", f"{_n(result['loss'], 4)} nats"), ("wall time", f"{result['wall_s']} s")]
    return "| | |\n|---|---|\n" + "\n".join(f"| {cell(k)} | {cell(str(v))} |" for k, v in rows)


def _detections(result: dict) -> str:
    d = result["detections"]
    T = result["seq_len"]
    sink = (f"sink rate {_n(d['sink_rate'])} of heads above {d['sink_threshold']} (most in one layer: "
            f"{_n(d['sink_rate_max_layer'])}); mean attention on position 0 {_n(d['sink_mass_mean'])} vs the uniform "
            f"baseline H_T/T = {d['uniform_baseline']:.3f} at T = {T}")
    if d["uniform_head_passes_threshold"]:
        sink += "; **at this T a uniform head passes the threshold: the rate says nothing, use --seq-len >= 16**"
    rows = [
        ("attention sinks (Gu et al. 2024)", "yes" if d["sinks"] else "no", sink),
        ("massive activations (Sun et al. 2024: > 100 and ~1000x the median)", "yes" if d["massive"] else "no",
         f"largest |h| {_n(d['top_abs_h_max'])}, at most {_n(d['top_over_median_max'])}x the median; layers: "
         + (", ".join(d["massive_layers"]) or "none")),
        ("residual-sink channel (top channel >= 10x the median channel)", "yes" if d["residual_sink_layers"] else "no",
         f"at most {_n(d['channel_ratio_max'])}x; layers: " + (", ".join(d["residual_sink_layers"]) or "none")),
        ("value drain (||v_0|| / mean ||v_t||)", "-",
         f"smallest layer mean {_n(d['value_drain_min'])}" if d["value_drain_min"] is not None
         else "not exposed by this architecture's taps"),
    ]
    return ("| phenomenon | detected | numbers |\n|---|---|---|\n"
            + "\n".join(f"| {cell(a)} | {b} | {cell(c)} |" for a, b, c in rows))


def _layers(result: dict) -> str:
    head = ("| layer | A[t,0] | sink rate | entropy/max | top \\|h\\| | median \\|h\\| | top/median | at (pos, ch) "
            "| Sun | top channel/median | top channels | kurtosis | v drain |")
    lines = [head, "|" + "---|" * 13]
    for r in result["layers"]:
        chans = ", ".join(map(str, (r["top_channels"] or [])[:3]))
        lines.append(f"| {r['layer']} | {_n(r['sink_mass'])} | {_n(r['sink_rate'], 2)} | {_n(r['entropy_over_max'])} "
                     f"| {_n(r['top_abs_h'])} | {_n(r['median_abs_h'])} | {_n(r['top_over_median'])} "
                     f"| ({r['top_position']}, {r['top_channel']}) | {'yes' if r['sun_massive'] else 'no'} "
                     f"| {_n(r['channel_ratio'])} | {chans} | {_n(r['kurtosis_resid'])} | {_n(r['value_drain'])} |")
    return "\n".join(lines)


def write_report(out: Path, result: dict, m: dict) -> list[str]:
    """report.md, report.html and the PNGs; returns the PNG file names."""
    from ..report import plots
    from ..report.render import Page, Section, Shown, html, markdown
    from ..rundir import atomic_write_bytes, atomic_write_text

    shown = []
    with plots.closing_new_figures():
        for file, caption, fig in _figures(result, m):
            data = plots.png(fig)
            atomic_write_bytes(out / file, data)
            shown.append(Shown(file, caption, png=data))
    sections = [
        Section("Detections", _detections(result), about="Does each probe fire on this model? Positive controls: "
                "GPT-2 124M should show massive activations, Pythia sinks (README, Positive controls)."),
        Section("Setup", _setup(result)),
        Section("Per layer", _layers(result) + "\n\nA[t,0]: mean attention on position 0 over heads, queries and "
                "windows; top |h|: the largest |activation| of the residual stream after the block, at (position, "
                "channel); Sun: |h| > 100 and > 1000x the median; kurtosis: across channels, of the residual stream; "
                "v drain: ||v_0|| / mean ||v_t|| over heads."),
        Section("Figures", "", figures=shown),
    ]
    for sec in sections:
        sec.anchor = sec.title.lower().replace(" ", "-")
    page = Page(f"normlab inspect: {result['model']}",
                f"The lab's forward probes on a pretrained causal LM, on {result['text']}.", sections)
    atomic_write_text(out / "report.md", markdown(page))
    atomic_write_text(out / "report.html", html(page, {f.file: f.png for f in shown}))
    return [f.file for f in shown]
