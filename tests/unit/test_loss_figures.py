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
