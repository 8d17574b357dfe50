"""Report layer: run directories -> statistics, tables, figures, HTML/Markdown/JSON (never trains).

    runs.py      run directories -> RunData          metrics.py   named metrics and preconditions
    claims.py    declared claims -> evidence, verdicts (evidence.py: the tests, scipy.stats)
    build.py     the report files                    render.py    Markdown and HTML
"""
from .build import build_report, summary_table
from .claims import ClaimSpec, evaluate_claims
from .runs import RunData, load_experiment_runs, load_run

__all__ = ["ClaimSpec", "RunData", "build_report", "evaluate_claims", "load_experiment_runs", "load_run",
           "summary_table"]
