"""Figures: data in, matplotlib Figure out (no file I/O). Curves are mean over seeds ± std band."""
from __future__ import annotations

import contextlib
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LOSS_CAPTION = ("Training loss per step, smoothed (EMA), mean over seeds ± sd: the whole run, its start and its end. "
                "A band that widens is a seed-dependent effect; a curve that stops early diverged.")
CUMULATIVE_CAPTION = ("Cumulative average of the training loss (mean over steps 0..t), mean over seeds ± sd: "
                      "which variant leads at each point of training (seed 003's second figure).")
VAL_CAPTION = "Validation loss at each evaluation step: thin lines are seeds, thick the mean."


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
    """A figure as PNG bytes (closed afterwards, so a report of many figures does not hold them all)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


# Seed 003's colours for its three variants; others cycle through tab10.
_FIXED = {"pre": "tab:green", "post": "tab:orange", "none": "tab:red"}


def color_of(variant: str, order: list[str]):
    """A matplotlib colour: seed 003's fixed ones, tab10 for up to 10 variants, else a turbo ramp."""
    if variant in _FIXED:
        return _FIXED[variant]
    i = order.index(variant)
    return f"C{i % 10}" if len(order) <= 10 else plt.get_cmap("turbo")(i / max(1, len(order) - 1))


def legend(ax, n_entries: int) -> None:
    """Inside the axes for a few entries; outside on the right, small and in columns, for many
    (the zoo and the lr-sweep have 30+ variants)."""
    if n_entries <= 8:
        ax.legend()
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6, ncol=1 + n_entries // 24,
                  borderaxespad=0)


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
    """The common ending of a single-axes figure: labels, grid, legend, tight layout."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    legend(ax, len(ax.get_legend_handles_labels()[0]))
    fig.tight_layout()
    return fig


def loss_panels(curves: dict[str, np.ndarray], beta: float = 0.95, first: int = 100, last: int = 200):
    """Three panels as in seed 003: smoothed full run, first `first` steps, last `last` steps."""
    order = list(curves)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    # windows are per curve: variants may train for different numbers of steps (ngpt's enc-dec runs);
    # a title never claims a window the runs did not have (the last 200 steps of a 60-step run)
    longest = max((c.shape[1] for c in curves.values()), default=0)
    first, last = min(first, longest), min(last, longest)
    views = [(axes[0], lambda m: slice(0, m), beta, "Smoothed loss (EMA %.2f), whole run" % beta),
             (axes[1], lambda m: slice(0, min(first, m)), 0.6, f"First {first} steps (EMA 0.6)"),
             (axes[2], lambda m: slice(max(0, m - last), m), beta, f"Last {last} steps (EMA {beta:.2f})")]
    for ax, window, b, title in views:
        for v, c in curves.items():
            w = window(c.shape[1])
            _band(ax, np.arange(c.shape[1])[w], ema(c, b)[:, w], v, color_of(v, order))
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        loss_ylim(ax, {v: ema(c, b) for v, c in curves.items()})
    axes[0].set_ylabel("training loss (nats/token)")
    legend(axes[-1] if len(order) > 8 else axes[0], len(order))
    fig.tight_layout()
    return fig


def cumulative_average(curves: dict[str, np.ndarray]):
    order = list(curves)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for v, c in curves.items():
        _band(ax, np.arange(c.shape[1]), cumulative_mean(c), v, color_of(v, order))
    return finish(fig, ax, "Cumulative average training loss", "step", "mean loss over steps 0..t")


def val_curves(val: dict[str, list[list[tuple[int, float]]]]):
    """Validation loss at eval steps, one line per seed (thin) and the mean (thick)."""
    order = list(val)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for v, per_seed in val.items():
        color = color_of(v, order)
        for points in per_seed:
            if points:
                ax.plot(*zip(*points), color=color, alpha=0.3, lw=0.8)
        steps = sorted({s for pts in per_seed for s, _ in pts})
        means = [np.mean([l for pts in per_seed for s2, l in pts if s2 == s]) for s in steps]
        ax.plot(steps, means, color=color, lw=2, marker="o", label=v)
    return finish(fig, ax, "Validation loss", "step", "loss (nats/token)")
