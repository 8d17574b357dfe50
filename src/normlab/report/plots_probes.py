"""Probe figures: arrays in, matplotlib Figure out (no file I/O). One panel per variant.

Seed 004 (Jha & Reagen 2024, scripts/plotting/): head-wise entropy heatmap, layer-wise entropy
during training, layer-wise NaN counts. Seed 000: per-channel norm weights per layer by channel
index and sorted; Sun et al. 2024: top-3 and median |h| per layer.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _panels(n: int, width: float = 4.6, height: float = 3.6, cols: int = 4):
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def grid_heatmaps(grids: dict[str, dict], title: str, cmap: str):
    """grids: {variant: {step or label: array (layers x heads)}}; one row per variant, shared colour scale."""
    variants = list(grids)
    n_cols = max(len(g) for g in grids.values())
    fig, axes = plt.subplots(len(variants), n_cols, figsize=(3.4 * n_cols + 1, 3.1 * len(variants)), squeeze=False,
                             layout="constrained")
    finite = [a[np.isfinite(a)] for g in grids.values() for a in g.values() if a is not None]
    finite = np.concatenate(finite) if finite else np.zeros(1)
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = None
    for row, v in enumerate(variants):
        for col in range(n_cols):
            ax = axes[row][col]
            items = list(grids[v].items())
            if col >= len(items):
                ax.set_visible(False)
                continue
            step, grid = items[col]
            image = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            if grid.size <= 96:
                for (i, j), value in np.ndenumerate(grid):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="w")
            ax.set_title(f"{v}, step {step}" if not isinstance(step, str) else f"{v}", fontsize=9)
            ax.set_xlabel("head")
            ax.set_ylabel("layer")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title)
    return fig


def layer_curves(series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], title: str, log: bool = False):
    """series: {variant: {layer: (steps, values)}}; one panel per variant, one line per layer (dark = early)."""
    fig, axes = _panels(len(series))
    for ax, (variant, layers) in zip(axes, series.items()):
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(layers), 1)))
        for color, (layer, (steps, values)) in zip(colors, layers.items()):
            ax.plot(steps, values, color=color, lw=1.1, label=layer)
        if log and any(np.nanmax(np.where(v > 0, v, np.nan), initial=0) > 0 for _, v in layers.values()):
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)  # near-uniform attention differs in the 4th digit
        ax.set_title(variant)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def massive_profile(data: dict[str, tuple[list[str], np.ndarray, np.ndarray]], title: str = ""):
    """data: {variant: (layer labels, top3 (L x 3), median (L,))}: top-1/2/3 and median |h| per layer, log y."""
    fig, axes = _panels(len(data))
    for ax, (variant, (labels, top, median)) in zip(axes, data.items()):
        x = np.arange(len(labels))
        for k, style in enumerate(("-o", "--o", ":o")):
            ax.plot(x, top[:, k], style, ms=3, label=f"top {k + 1}")
        ax.plot(x, median, "-s", ms=3, color="k", label="median")
        ax.set_yscale("log")
        ax.set_xticks(x, [lab.replace("layer", "") for lab in labels])
        ax.set_xlabel("layer")
        ax.set_title(variant)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("|h| (residual stream)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title or "Massive activations: top-3 and median |h| per layer (last probe step)")
    fig.tight_layout()
    return fig


def norm_weight_profiles(weights: dict[str, dict[str, np.ndarray]], title: str = "Norm weights"):
    """weights: {variant: {param name: vector}}; per variant, by channel index (left) and sorted (right)."""
    variants = list(weights)
    fig, axes = plt.subplots(len(variants), 2, figsize=(12, 3.3 * len(variants)), squeeze=False)
    for row, v in enumerate(variants):
        vectors = {k: w for k, w in weights[v].items() if w.size > 1}
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(vectors), 1)))
        for color, (name, w) in zip(colors, vectors.items()):
            axes[row][0].plot(np.arange(w.size), w, color=color, lw=0.9, label=name)
            axes[row][1].plot(np.arange(w.size), np.sort(w), color=color, lw=0.9)
        axes[row][0].set_title(f"{v}: {title.lower()}")
        axes[row][1].set_title(f"{v}: sorted")
        for ax in axes[row]:
            ax.set_xlabel("channel")
            ax.grid(alpha=0.3)
        if vectors:
            axes[row][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def embedding_histograms(rows: dict[str, dict[str, np.ndarray]]):
    """rows: {variant: {table: row norms}}; one panel per table, variants overlaid."""
    tables = list(dict.fromkeys(t for r in rows.values() for t in r))
    fig, axes = _panels(len(tables))
    for ax, table in zip(axes, tables):
        for i, (variant, r) in enumerate(rows.items()):
            if table in r and np.isfinite(r[table]).any():
                ax.hist(r[table][np.isfinite(r[table])], bins=30, alpha=0.45, color=f"C{i}", label=variant)
        ax.set_title(f"{table}: row norms")
        ax.set_xlabel("||row||")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def grouped_bars(values: dict[str, np.ndarray], labels: list[str], title: str, ylabel: str, errors=None):
    """values: {variant: per-layer values}; bars grouped by layer (entropic overload per layer)."""
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(labels) * len(values) / 2), 4.0))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(labels))
    for i, (variant, v) in enumerate(values.items()):
        err = None if errors is None else errors.get(variant)
        ax.bar(x + i * width - 0.4 + width / 2, v, width, yerr=err, label=variant, color=f"C{i}", capsize=2)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
