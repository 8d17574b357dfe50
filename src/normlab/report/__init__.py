"""Report layer: run directories -> statistics, tables, figures, HTML/Markdown/JSON (never trains).

    runs.py      run directories -> RunData          metrics.py   named metrics and preconditions
    claims.py    declared claims -> evidence, verdicts (evidence.py: the tests, scipy.stats)
    build.py     the report files                    render.py    Markdown and HTML
"""
import importlib

# Which figures a report draws (build.py): summary: training curves, the experiment's own figures, its
# probe_figures (and nan_counts) in full, every other probe's per-layer curves collapsed into one overview
# figure; all: every probe figure in full. Here, not in build.py: the CLI checks it before a sweep trains.
FIGURE_SETS = ("summary", "all")


def check_figure_set(figures: str) -> None:
    """A bad figure set is one line (ConfigError), before a sweep trains or a report reads anything."""
    if figures not in FIGURE_SETS:
        from ..config import ConfigError

        raise ConfigError(f"figures={figures!r}: allowed: {', '.join(FIGURE_SETS)}")

# Names resolve on first use (PEP 562): importing report.claims for its specs (every sweep worker does, via
# experiments/spec.py) must not import build.py's matplotlib (~0.6 s of each worker's start-up).
_EXPORTS = {"build_report": "build", "summary_table": "build", "ClaimSpec": "claims", "evaluate_claims": "claims",
            "RunData": "runs", "load_experiment_runs": "runs", "load_run": "runs"}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = ["FIGURE_SETS", "ClaimSpec", "check_figure_set", "RunData", "build_report", "evaluate_claims", "load_experiment_runs", "load_run",
           "summary_table"]
