"""Loss figures of short runs (issue 27): one panel when the first / last windows are the whole run, and integer
step ticks (a 4-step smoke run drew three identical panels with ticks at 0.5 steps)."""
import numpy as np

from normlab.report import plots


def _curves(steps):
    rng = np.random.default_rng(0)
    return {v: 3.0 - np.linspace(0, 1, steps) + rng.normal(0, 0.01, (3, steps)) for v in ("pre", "post")}


def test_a_short_run_gets_one_loss_panel_with_integer_ticks():
    with plots.closing_new_figures():
        fig = plots.loss_panels(_curves(4))
        [ax] = fig.axes
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert "whole run (4 steps" in ax.get_title()
        long = plots.loss_panels(_curves(1000))
        assert len(long.axes) == 3


def test_step_axes_of_the_other_loss_figures_are_integers():
    with plots.closing_new_figures():
        for fig in (plots.cumulative_average(_curves(5)),
                    plots.val_curves({"pre": [[(0, 3.0), (2, 2.5), (4, 2.2)]], "post": [[(0, 3.1), (4, 2.4)]]})):
            ax = fig.axes[0]
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_variant_panels_share_y_and_a_negligible_colour_range_is_drawn_flat():
    from normlab.report import plots_probes

    steps = np.array([0, 100, 200])
    series = {"pre": {"layer0": (steps, np.array([1.0, 1.1, 1.2]))},
              "post": {"layer0": (steps, np.array([5.0, 6.0, 7.0]))}}
    with plots.closing_new_figures():
        fig = plots_probes.layer_curves(series, "entropy")
        a, b = fig.axes[:2]
        assert a.get_ylim() == b.get_ylim() and a.get_ylim()[1] >= 7.0    # pre's panel is on post's scale
        grids = {v: {0: np.full((2, 2), 0.1266) + np.array([[0, 0.0006], [0.0003, 0]])} for v in ("pre", "post")}
        fig = plots_probes.grid_heatmaps(grids, "attention entropy", "viridis", cbar_label="entropy")
        norm = fig.axes[0].images[0].norm
        assert norm.vmax - norm.vmin > 0.01                    # not 0.1266..0.1272 stretched over the colour map
        assert "under 1 %: drawn flat" in fig.axes[-1].get_ylabel() + fig.axes[-1].get_xlabel()
    lo, hi, note = plots_probes.colour_range(np.array([0.0, 0.5, 1.0]))
    assert (lo, hi, note) == (0.0, 1.0, "")


def test_every_probe_caption_says_what_it_aggregates():
    from normlab.probes import PROBES
    from normlab.report.probe_data import FIRST_SEED, SEED_MEAN, caption_of

    for cls in PROBES.values():
        for f in cls.figures:
            caption = caption_of(f)
            assert caption.startswith(f.caption.rstrip()[:20])
            assert caption.endswith(SEED_MEAN if f.kind in ("layers", "heads", "profile") else FIRST_SEED), f.file
