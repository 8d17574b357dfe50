"""Figures: data in, matplotlib Figure out (no file I/O). Curves are mean over seeds ± std band.

A figure of a few variants overlays them on one axis (legend outside the data); one of many
(the zoo's 29, the lr-sweep's 35) draws small multiples, one panel per variant with the others in
grey behind it, or ranks the variants on one axis, since 30 colours on one axis cannot be told
apart. `png` writes a palette PNG, a tenth of a full-colour one for these flat-coloured plots.
"""
from __future__ import annotations

import contextlib
import io
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MANY = 8             # above this many variants a figure draws small multiples or a ranking, not one colour each
DPI = 100            # figures are sized to the page (at most 12 in = 1200 px, the report's width): 1:1 on screen
PAGE_WIDTH_IN = 12.0

LOSS_CAPTION = ("Training loss per step, smoothed (EMA), mean over seeds ± sd: the whole run, its start and its end. "
                "A band that widens is a seed-dependent effect; a curve that stops early diverged.")
LOSS_CAPTION_MANY = ("Training loss per step, smoothed (EMA 0.95), one panel per variant (mean over seeds ± sd, in "
                     "colour; every other variant in grey behind it), shared axes. A curve above the grey bundle "
                     "trains worse; a curve that stops early diverged.")
CUMULATIVE_CAPTION = ("Cumulative average of the training loss (mean over steps 0..t), mean over seeds ± sd: "
                      "which variant leads at each point of training (seed 003's second figure).")
CUMULATIVE_CAPTION_MANY = ("Average training loss over the whole run (the cumulative average at the last step) per "
                           "variant, ranked, best at the top: mean over seeds, the whiskers ± sd, each seed a grey "
                           "dot. A low value is a variant that learned fast and stayed low.")
VAL_CAPTION = "Validation loss at each evaluation step: thin lines are seeds, thick the mean."
VAL_CAPTION_MANY = ("Validation loss at each evaluation step, one panel per variant (thin: seeds, thick: their mean; "
                    "grey: the other variants' means), shared axes.")


@contextlib.contextmanager
def closing_new_figures():
    """Close every figure opened inside the block, also when it raises (a broken run directory met halfway
    through the figures), so a process that builds many reports does not keep their figures."""
    before = set(plt.get_fignums())
    try:
        yield
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def png(fig) -> bytes:
    """A figure as a palette PNG (256 colours, no dithering: flat plot colours stay exact; closed afterwards,
    so a report of many figures does not hold them all)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    plt.close(fig)
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    out = io.BytesIO()
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
    return out.getvalue()


def many(items) -> bool:
    return len(items) > MANY


# Seed 003's colours for its three variants; others cycle through tab10.
_FIXED = {"pre": "tab:green", "post": "tab:orange", "none": "tab:red"}


def color_of(variant: str, order: list[str]):
    """A matplotlib colour: seed 003's fixed ones, tab10 for up to 10 variants, else a turbo ramp."""
    if variant in _FIXED:
        return _FIXED[variant]
    i = order.index(variant)
    return f"C{i % 10}" if len(order) <= 10 else plt.get_cmap("turbo")(i / max(1, len(order) - 1))


def legend(ax, n_entries: int) -> None:
    """Outside the axes on the right, so it never covers data; small and in columns for many entries."""
    if not n_entries:
        return
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              fontsize=8 if n_entries <= MANY else 6, ncol=1 + n_entries // 24)


def columns(names: list[str], most: int = 6) -> int:
    """Panels per row of small multiples: the size of the variants' groups when names are `<scheme>_<x>` in
    equal consecutive groups (the lr-sweep: a row per scheme, a column per learning rate), else `most`."""
    schemes = [n.rpartition("_")[0] for n in names]
    sizes = [sum(1 for s in schemes if s == k) for k in dict.fromkeys(schemes)]
    if all(schemes) and len(set(sizes)) == 1 and 3 <= sizes[0] <= 8 and len(sizes) > 1:
        return sizes[0]
    return min(most, len(names))


def small_multiples(n: int, cols: int, panel_w: float = 1.95, panel_h: float = 1.45, sharey: bool = True,
                    top_in: float = 0.55, right_in: float = 0.1, left_in: float = 0.7, bottom_in: float = 0.55):
    """A grid of n small panels on shared axes, sized to the page (fixed margins in inches rather than a
    layout engine: at 30 panels constrained layout costs a second draw of every tick label)."""
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    gap_w, gap_h = (0.22 if sharey else 0.5), 0.38
    panel_w = min(panel_w, (PAGE_WIDTH_IN - left_in - right_in - gap_w * (cols - 1)) / cols)
    width = left_in + right_in + cols * panel_w + (cols - 1) * gap_w
    height = top_in + bottom_in + rows * panel_h + (rows - 1) * gap_h
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, sharex=True, sharey=sharey,
                             gridspec_kw={"left": left_in / width, "right": 1 - right_in / width,
                                          "bottom": bottom_in / height, "top": 1 - top_in / height,
                                          "wspace": gap_w / panel_w, "hspace": gap_h / panel_h})
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for i, ax in enumerate(axes.flat[:n]):
        ax.tick_params(labelsize=7)
        if i + cols >= n:  # nothing drawn below it: the panel keeps its own x tick labels
            ax.xaxis.set_tick_params(labelbottom=True)
    return fig, list(axes.flat[:n])


def suptitle(fig, text: str) -> None:
    """The figure's title in the top margin small_multiples leaves (its default height sits on the top row's
    panel titles)."""
    fig.suptitle(text, fontsize=10, y=1 - 0.1 / fig.get_figheight(), va="top")


def figure_legend(fig, axes, title: str = "", fontsize: float = 7) -> None:
    """One legend for a grid of panels, from the panel with the most entries, right of the panels
    (in the margin small_multiples(right_in=...) left for it)."""
    ax = max(axes, key=lambda a: len(a.get_legend_handles_labels()[0]))
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    x = max(a.get_position().x1 for a in axes) + 0.01
    y = max(a.get_position().y1 for a in axes)
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(x, y), fontsize=fontsize, title=title or None,
               title_fontsize=fontsize, ncol=1 + len(labels) // 16, borderaxespad=0)


def loss_ylim(ax, curves: dict[str, np.ndarray]) -> None:
    """Cap the y axis a little above the first-step loss, so one diverging run (loss in the
    hundreds) does not flatten every other curve; it leaves the plot at the top."""
    starts = [np.nanmean(c[:, 0]) for c in curves.values() if c.shape[1] and np.isfinite(c[:, 0]).any()]
    lows = [np.nanmin(c) for c in curves.values() if np.isfinite(c).any()]
    if starts and lows:
        top = 1.15 * max(starts)
        ax.set_ylim(min(lows) - 0.05 * abs(top), top)


def ema(x: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average along the last axis; NaN steps are carried over."""
    out = np.full_like(x, np.nan, dtype=float)
    acc = np.zeros(x.shape[:-1])
    weight = np.zeros(x.shape[:-1])
    for t in range(x.shape[-1]):
        ok = np.isfinite(x[..., t])
        acc = np.where(ok, beta * acc + (1 - beta) * np.nan_to_num(x[..., t]), acc)
        weight = np.where(ok, beta * weight + (1 - beta), weight)
        out[..., t] = np.where(weight > 0, acc / np.maximum(weight, 1e-12), np.nan)
    # a curve ends at its last finite step (a diverged run stops there; it is not carried on)
    last = np.where(np.isfinite(x).any(-1), x.shape[-1] - 1 - np.argmax(np.isfinite(x)[..., ::-1], axis=-1), -1)
    out[np.arange(x.shape[-1]) > last[..., None]] = np.nan
    return out


def cumulative_mean(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    return np.cumsum(np.where(finite, x, 0.0), axis=-1) / np.maximum(np.cumsum(finite, axis=-1), 1)


def _band(ax, steps, curves, label, color):
    with warnings.catch_warnings():  # steps where every seed had stopped (diverged) are NaN: no line there
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(curves, axis=0)
        std = np.nanstd(curves, axis=0)
    ax.plot(steps, mean, color=color, label=label, lw=1.6)
    if curves.shape[0] > 1:
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.18, lw=0)


def finish(fig, ax, title: str, xlabel: str, ylabel: str):
    """The common ending of a single-axes figure: labels, grid, legend outside the data, tight layout."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    legend(ax, len(ax.get_legend_handles_labels()[0]))
    fig.tight_layout()
    return fig


def loss_panels(curves: dict[str, np.ndarray], beta: float = 0.95, first: int = 100, last: int = 200):
    """Three panels as in seed 003: smoothed full run, first `first` steps, last `last` steps; for many
    variants, one panel per variant (whole run)."""
    if many(curves):
        return _loss_multiples(curves, beta)
    order = list(curves)
    # windows are per curve: variants may train for different numbers of steps (ngpt's enc-dec runs);
    # a title never claims a window the runs did not have (the last 200 steps of a 60-step run)
    longest = max((c.shape[1] for c in curves.values()), default=0)
    first, last = min(first, longest), min(last, longest)
    if first >= longest and last >= longest:   # a short run: the three windows are the whole run, drawn once
        fig, ax = plt.subplots(figsize=(8.5, 3.6))
        axes = [ax]
        views = [(ax, lambda m: slice(0, m), beta, "Smoothed loss (EMA %.2f), whole run (%d steps: the first and "
                  "last windows are the same)" % (beta, longest))]
    else:
        fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.6))
        views = [(axes[0], lambda m: slice(0, m), beta, "Smoothed loss (EMA %.2f), whole run" % beta),
                 (axes[1], lambda m: slice(0, min(first, m)), 0.6, f"First {first} steps (EMA 0.6)"),
                 (axes[2], lambda m: slice(max(0, m - last), m), beta, f"Last {last} steps (EMA {beta:.2f})")]
    for ax, window, b, title in views:
        for v, c in curves.items():
            w = window(c.shape[1])
            _band(ax, np.arange(c.shape[1])[w], ema(c, b)[:, w], v, color_of(v, order))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        integer_steps(ax)
        ax.grid(alpha=0.3)
        loss_ylim(ax, {v: ema(c, b) for v, c in curves.items()})
    axes[0].set_ylabel("training loss (nats/token)")
    legend(axes[-1], len(order))
    fig.tight_layout()
    return fig


def integer_steps(ax) -> None:
    """Steps are whole numbers: a short run's x axis gets no 0.5-step ticks."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _mean(curves: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(curves, axis=0)


def _loss_multiples(curves: dict[str, np.ndarray], beta: float):
    smooth = {v: ema(c, beta) for v, c in curves.items()}
    fig, axes = small_multiples(len(curves), columns(list(curves)))
    for ax, (v, c) in zip(axes, smooth.items()):
        for other, o in smooth.items():
            if other != v:
                ax.plot(np.arange(o.shape[1]), _mean(o), color="0.82", lw=0.6)
        _band(ax, np.arange(c.shape[1]), c, v, "C0")
        finite = _mean(c)[np.isfinite(_mean(c))]
        end = f"  {finite[-1]:.2f}" if finite.size else "  (no finite loss)"
        ax.set_title(v + end, fontsize=7.5)
        ax.grid(alpha=0.3)
        integer_steps(ax)
    loss_ylim(axes[0], smooth)
    fig.supxlabel("step", fontsize=9)
    fig.supylabel("training loss (nats/token)", fontsize=9)
    suptitle(fig, f"Smoothed training loss (EMA {beta:.2f}), one panel per variant; title: its final value")
    return fig


def cumulative_average(curves: dict[str, np.ndarray]):
    if many(curves):
        return ranked_dots({v: cumulative_mean(c)[:, -1] for v, c in curves.items() if c.shape[1]},
                           "Average training loss over the whole run, ranked",
                           "mean training loss over all steps (nats/token)")
    order = list(curves)
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    for v, c in curves.items():
        _band(ax, np.arange(c.shape[1]), cumulative_mean(c), v, color_of(v, order))
    integer_steps(ax)
    return finish(fig, ax, "Cumulative average training loss", "step", "mean loss over steps 0..t")


def ranked_dots(values: dict[str, np.ndarray], title: str, xlabel: str):
    """One row per variant, sorted by the mean (lowest on top): mean ± sd over seeds, each seed a grey dot;
    a variant with no finite value is listed at the bottom."""
    def mean(v):
        finite = v[np.isfinite(v)]
        return float(finite.mean()) if finite.size else np.inf
    order = sorted(values, key=lambda v: mean(values[v]))[::-1]
    fig, ax = plt.subplots(figsize=(8.5, 0.22 * len(order) + 1.0))
    for i, v in enumerate(order):
        x = values[v][np.isfinite(values[v])]
        if not x.size:
            continue
        ax.scatter(x, [i] * x.size, s=9, color="0.6", zorder=2)
        ax.errorbar([x.mean()], [i], xerr=[[x.std()], [x.std()]], fmt="o", ms=4, color="C0", capsize=2, zorder=3)
    ax.set_yticks(range(len(order)), [v if np.isfinite(mean(values[v])) else f"{v} (no finite value)"
                                      for v in order], fontsize=7)
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def val_curves(val: dict[str, list[list[tuple[int, float]]]]):
    """Validation loss at eval steps, one line per seed (thin) and the mean (thick)."""
    means = {v: _val_mean(per_seed) for v, per_seed in val.items()}
    if many(val):
        fig, axes = small_multiples(len(val), columns(list(val)))
        for ax, (v, per_seed) in zip(axes, val.items()):
            for other, (steps, m) in means.items():
                if other != v:
                    ax.plot(steps, m, color="0.82", lw=0.6)
            for points in per_seed:
                if points:
                    ax.plot(*zip(*points), color="C0", alpha=0.35, lw=0.7)
            ax.plot(*means[v], color="C0", lw=1.6)
            ax.set_title(v, fontsize=7.5)
            ax.grid(alpha=0.3)
            integer_steps(ax)
        fig.supxlabel("step", fontsize=9)
        fig.supylabel("validation loss (nats/token)", fontsize=9)
        suptitle(fig, "Validation loss, one panel per variant")
        return fig
    order = list(val)
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    for v, per_seed in val.items():
        color = color_of(v, order)
        for points in per_seed:
            if points:
                ax.plot(*zip(*points), color=color, alpha=0.3, lw=0.8)
        ax.plot(*means[v], color=color, lw=2, marker="o", label=v)
    integer_steps(ax)
    return finish(fig, ax, "Validation loss", "step", "loss (nats/token)")


def _val_mean(per_seed) -> tuple[list[int], list[float]]:
    steps = sorted({s for pts in per_seed for s, _ in pts})
    return steps, [float(np.mean([l for pts in per_seed for s2, l in pts if s2 == s])) for s in steps]
