"""Probe figures: arrays in, matplotlib Figure out (no file I/O). One panel per variant.

Seed 004 (Jha & Reagen 2024, scripts/plotting/): head-wise entropy heatmap, layer-wise entropy
during training, layer-wise NaN counts. Seed 000: per-channel norm weights per layer by channel
index and sorted; Sun et al. 2024: top-3 and median |h| per layer. Many variants (plots.MANY) get
smaller panels on shared axes and one legend for the figure, outside the data.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from .plots import MANY, PAGE_WIDTH_IN, columns, figure_legend, many, small_multiples, suptitle  # noqa: E402

# boxplot's `vert` is deprecated from matplotlib 3.10 on, where `orientation` replaces it
_HORIZONTAL = ({"orientation": "horizontal"} if tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) >= (3, 10)
               else {"vert": False})
SPREAD_MOST = 4       # heatmaps at first/middle/last step for up to this many variants, else the last step only


def _panels(names: list[str], legend: bool = True, share: bool = True):
    """One panel per variant: four across at a readable size for a few, small multiples for many; room on
    the right for the figure's one legend. Variant panels share their y axis (`share`), so a taller curve is a
    larger value, not another scale."""
    right = 1.0 if legend else 0.1
    if many(names):
        return small_multiples(len(names), columns(names), right_in=right)
    return small_multiples(len(names), min(4, len(names)), panel_w=2.6, panel_h=2.2, sharey=share, right_in=right)


NEGLIGIBLE = 0.01   # a heatmap whose values span less than this fraction of their size is drawn flat, and says so


def colour_range(finite: np.ndarray) -> tuple[float, float, str]:
    """(vmin, vmax, note) of a heatmap's shared colour scale: the data's range, or, where that range is negligible
    (0.1266-0.1272: seed noise), a scale 10 % of the value wide around it, so noise is not drawn as full-range
    structure; `note` then says so for the colour bar's label."""
    if not finite.size:
        return 0.0, 1.0, ""
    lo, hi = float(finite.min()), float(finite.max())
    size = max(abs(lo), abs(hi))
    if hi - lo < NEGLIGIBLE * size:
        mid = (lo + hi) / 2
        return mid - 0.05 * size, mid + 0.05 * size, f"range {lo:.4g} to {hi:.4g}, under 1 %: drawn flat"
    if hi == lo:
        return lo - 0.5, hi + 0.5, ""
    return lo, hi, ""


def _text_color(rgba) -> str:
    """Dark text on a light cell, light on a dark one (relative luminance of the cell colour)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def _layer_ticks(labels: list[str] | None, n: int) -> list[str]:
    if labels is None or len(labels) != n:
        return [str(i) for i in range(n)]
    return [str(lab).replace("encoder.layer", "enc ").replace("decoder.layer", "dec ").replace("layer", "")
            for lab in labels]


def _heatmap(ax, grid: np.ndarray, cmap, vmin: float, vmax: float, labels, annotate: bool):
    image = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    n_layers, n_heads = grid.shape
    if n_heads <= 16:
        ax.set_xticks(range(n_heads))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yticks(range(n_layers), _layer_ticks(labels, n_layers))
    if annotate:
        for (i, j), value in np.ndenumerate(grid):
            color = _text_color(image.cmap(image.norm(value))) if np.isfinite(value) else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    return image


def grid_heatmaps(grids: dict[str, dict], title: str, cmap: str, labels: list[str] | None = None,
                  cbar_label: str = ""):
    """grids: {variant: {step or label: array (layers x heads)}}; one shared, labelled colour scale.

    Up to SPREAD_MOST variants: a row per variant, a column per step, values written in the cells;
    more: the last step of each variant as small multiples (cells too small to write in)."""
    finite = [a[np.isfinite(a)] for g in grids.values() for a in g.values() if a is not None]
    finite = np.concatenate(finite) if finite else np.zeros(0)
    vmin, vmax, flat = colour_range(finite)
    cbar_label = f"{cbar_label or title}" + (f" ({flat})" if flat else "")
    cells = [(v, step, grid) for v, g in grids.items() for step, grid in g.items()]
    if len(grids) > SPREAD_MOST:
        cells = [(v, *list(g.items())[-1]) for v, g in grids.items()]
        fig, axes = small_multiples(len(cells), columns(list(grids)), panel_h=1.45, sharey=False, right_in=0.9)
        annotate = False
    else:
        n_cols = max(len(g) for g in grids.values())
        fig, grid_axes = plt.subplots(len(grids), n_cols, figsize=(min(PAGE_WIDTH_IN, 3.3 * n_cols + 1.2),
                                                                  2.7 * len(grids) + 0.4),
                                      squeeze=False, layout="constrained")
        axes = []
        for row, g in enumerate(grids.values()):
            axes += list(grid_axes[row][:len(g)])
            for ax in grid_axes[row][len(g):]:
                ax.set_visible(False)
        annotate = max(a.size for _, _, a in cells) <= 96
    image = None
    for ax, (v, step, grid) in zip(axes, cells):
        image = _heatmap(ax, grid, cmap, vmin, vmax, labels, annotate)
        if annotate:
            ax.set_title(f"{v}, step {step}" if not isinstance(step, str) else v, fontsize=8)
            ax.set_xlabel("head", fontsize=8)
            ax.set_ylabel("layer", fontsize=8)
        else:
            ax.set_title(v, fontsize=7)
    if not annotate:
        fig.supxlabel("head", fontsize=9)
        fig.supylabel("layer", fontsize=9)
    if image is not None and annotate:
        fig.colorbar(image, ax=axes, shrink=0.8, aspect=30).set_label(cbar_label, fontsize=8)
    elif image is not None:  # in the right margin small_multiples left, as tall as the top two rows
        x1, y1 = max(a.get_position().x1 for a in axes), max(a.get_position().y1 for a in axes)
        y0 = min(a.get_position().y0 for a in axes)
        y0 = max(y0, y1 - 0.5 * (y1 - y0)) if len(axes) > 12 else y0
        cax = fig.add_axes((x1 + 0.012, y0, 0.012, y1 - y0))
        bar = fig.colorbar(image, cax=cax)
        bar.set_label(cbar_label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if annotate:
        fig.suptitle(title, fontsize=10)
    else:
        suptitle(fig, title + " (last probe step)")
    return fig


def layer_curves(series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], title: str, log: bool = False):
    """series: {variant: {layer: (steps, values)}}; one panel per variant, one line per layer (dark = early)."""
    fig, axes = _panels(list(series))
    positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for layers in series.values() for _, v in layers.values()]
                              or [np.zeros(0)])
    use_log = log and positive.size > 0 and positive.max() >= 10 * positive.min()  # a log axis for decades only
    for ax, (variant, layers) in zip(axes, series.items()):
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(layers), 1)))
        for color, (layer, (steps, values)) in zip(colors, layers.items()):
            ax.plot(steps, values, color=color, lw=1.1, label=layer)
        if use_log:
            _log_y(ax)
        else:
            ax.ticklabel_format(axis="y", useOffset=False)  # near-uniform attention differs in the 4th digit
        ax.set_title(variant, fontsize=7.5 if many(series) else 9)
        ax.grid(alpha=0.3)
    fig.supxlabel("probe step", fontsize=9)
    figure_legend(fig, axes, "layer")
    suptitle(fig, title)
    return fig


OVERVIEW_COLUMNS = 5


def probe_overview(panels: list[tuple[str, dict[str, tuple[np.ndarray, np.ndarray]], bool]], order: list[str]):
    """panels: [(title, {variant: (steps, values)}, log)]: one small panel per probe curve, a line per variant in
    its report colour, each panel on its own y scale (log where the values span decades and `log` allows)."""
    from .plots import color_of

    fig, axes = small_multiples(len(panels), OVERVIEW_COLUMNS, panel_w=2.15, panel_h=1.5, sharey=False,
                                right_in=1.1 if not many(order) else 1.6, top_in=0.75)
    for ax, (title, curves, log) in zip(axes, panels):
        for variant, (steps, values) in curves.items():
            ax.plot(steps, values, lw=1.0, color=color_of(variant, order), label=variant)
        positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for _, v in curves.values()] or [np.zeros(0)])
        if log and positive.size and positive.max() >= 10 * positive.min():
            _log_y(ax)
        ax.set_title(_short(title), fontsize=6.5)
        ax.grid(alpha=0.3)
    fig.supxlabel("probe step", fontsize=8)
    figure_legend(fig, axes, "variant")
    suptitle(fig, "Probes at a glance: mean over layers")
    return fig


def _short(title: str, width: int = 34) -> str:
    """A panel title: the figure's title without "per layer" (every panel is a mean over layers), on two lines at
    most."""
    import textwrap

    lines = textwrap.wrap(title.replace(", per layer", "").replace(" per layer", ""), width)
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")


def massive_profile(data: dict[str, tuple[list[str], np.ndarray, np.ndarray]], title: str = ""):
    """data: {variant: (layer labels, top3 (L x 3), median (L,))}: top-1/2/3 and median |h| per layer, log y."""
    fig, axes = _panels(list(data))
    for ax, (variant, (labels, top, median)) in zip(axes, data.items()):
        x = np.arange(len(labels))
        for k, style in enumerate(("-o", "--o", ":o")):
            ax.plot(x, top[:, k], style, ms=3, label=f"top {k + 1}")
        ax.plot(x, median, "-s", ms=3, color="k", label="median")
        _log_y(ax)
        ax.set_xticks(x, _layer_ticks(labels, len(labels)))
        ax.set_title(variant, fontsize=7.5 if many(data) else 9)
        ax.grid(alpha=0.3)
    fig.supxlabel("layer", fontsize=9)
    fig.supylabel("|h| (residual stream)", fontsize=9)
    figure_legend(fig, axes)
    suptitle(fig, title or "Massive activations: top-3 and median |h| per layer (last probe step)")
    return fig


def norm_weight_profiles(weights: dict[str, dict[str, np.ndarray]], title: str = "Norm weights"):
    """weights: {variant: {param name: vector}}; per variant, by channel index and sorted (many variants:
    sorted only, one small panel each; colour = depth, dark = early)."""
    variants = list(weights)
    if many(variants):
        fig, axes = small_multiples(len(variants), columns(variants), sharey=False)
        for ax, v in zip(axes, variants):
            _weight_lines(ax, weights[v], sort=True)
            ax.set_title(v, fontsize=7.5)
        fig.supxlabel("channel rank (sorted)", fontsize=9)
        suptitle(fig, f"{title}: each parameter sorted, one panel per variant (dark = early layers)")
        return fig
    fig, axes = plt.subplots(len(variants), 2, figsize=(9.5, 2.6 * len(variants) + 0.3), squeeze=False,
                             layout="constrained")
    for row, v in enumerate(variants):
        _weight_lines(axes[row][0], weights[v], sort=False)
        _weight_lines(axes[row][1], weights[v], sort=True)
        axes[row][0].set_title(f"{v}: {title.lower()}", fontsize=9)
        axes[row][1].set_title(f"{v}: sorted", fontsize=9)
        for ax in axes[row]:
            ax.set_xlabel("channel", fontsize=8)
        if axes[row][0].get_lines():
            axes[row][1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6, borderaxespad=0,
                                handles=axes[row][0].get_lines())
    return fig


def _weight_lines(ax, vectors: dict[str, np.ndarray], sort: bool) -> None:
    vectors = {k: w for k, w in vectors.items() if w.size > 1}
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(vectors), 1)))
    for color, (name, w) in zip(colors, vectors.items()):
        ax.plot(np.arange(w.size), np.sort(w) if sort else w, color=color, lw=0.9, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _log_y(ax) -> None:
    """Log y with plain numbers (0.01, 2, 300), not 2 x 10^0; over less than two decades the 2s and 5s
    between the powers of ten are labelled too, and under one decade the axis stays linear (a log axis
    there has one tick label, or none). Over two decades or more there are no minor ticks: eight unlabelled
    marks a decade are invisible at a small panel's size and were ~40 % of drawing 35 log panels (each is a
    Tick with its own line and text)."""
    lo, hi = ax.dataLim.y0, ax.dataLim.y1
    if not (lo > 0 and hi >= 10 * lo):
        return
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    few = lo > 0 and hi / lo < 100
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    if few:
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: f"{y:g}" if _lead(y) in (2, 5) else ""))
    else:
        ax.yaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="y", which="both", labelsize=7)


def embedding_histograms(rows: dict[str, dict[str, np.ndarray]]):
    """rows: {variant: {table: row norms}}; one panel per table: variants overlaid (a few), or one box per
    variant ranked by the median (many)."""
    tables = list(dict.fromkeys(t for r in rows.values() for t in r))
    if many(rows):
        fig, axes = plt.subplots(1, len(tables), figsize=(min(PAGE_WIDTH_IN, 5.0 * len(tables)),
                                                          0.2 * len(rows) + 1.2), squeeze=False, layout="constrained")
        for ax, table in zip(axes[0], tables):
            data = {v: r[table][np.isfinite(r[table])] for v, r in rows.items() if table in r}
            order = sorted((v for v in data if data[v].size), key=lambda v: np.median(data[v]))[::-1]
            ax.boxplot([data[v] for v in order], widths=0.6, showfliers=False, **_HORIZONTAL)
            ax.set_yticks(range(1, len(order) + 1), order, fontsize=6.5)
            ax.set_title(f"{table}: row norms, ranked by median", fontsize=9)
            ax.set_xlabel("||row||", fontsize=8)
            ax.grid(alpha=0.3, axis="x")
        return fig
    fig, axes = _panels(tables, share=False)   # one panel per table (wte, lm_head): their own counts
    for ax, table in zip(axes, tables):
        for i, (variant, r) in enumerate(rows.items()):
            if table in r and np.isfinite(r[table]).any():
                ax.hist(r[table][np.isfinite(r[table])], bins=30, alpha=0.45, color=f"C{i}", label=variant)
        ax.set_title(f"{table}: row norms", fontsize=9)
        ax.set_xlabel("||row||", fontsize=8)
        ax.grid(alpha=0.3)
    figure_legend(fig, axes)
    return fig


def grouped_bars(values: dict[str, np.ndarray], labels: list[str], title: str, ylabel: str, errors=None):
    """values: {variant: per-layer values}; bars grouped by layer (entropic overload per layer)."""
    fig, ax = plt.subplots(figsize=(min(PAGE_WIDTH_IN, max(7.0, 0.55 * len(labels) * len(values))), 3.8))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(labels))
    for i, (variant, v) in enumerate(values.items()):
        err = None if errors is None else errors.get(variant)
        color = f"C{i % 10}" if len(values) <= 10 else plt.get_cmap("turbo")(i / max(1, len(values) - 1))
        ax.bar(x + i * width - 0.4 + width / 2, v, width, yerr=err, label=variant, color=color, capsize=2)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8 if len(values) <= MANY else 6,
              borderaxespad=0)
    fig.tight_layout()
    return fig


def _lead(y: float) -> int:
    """The leading digit of a positive number (2 for 0.02, 5 for 500)."""
    return int(f"{y:e}"[0]) if y > 0 else 0
