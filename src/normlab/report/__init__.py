"""Report layer: finished run directories -> tables, figures, HTML/Markdown/JSON (never trains)."""
from .build import build_report, markdown_table_only
from .runs import RunData, load_experiment_runs, load_run

__all__ = ["RunData", "build_report", "load_experiment_runs", "load_run", "markdown_table_only"]
