"""Experiments: named presets (YAML beside this file), sweep expansion and parallel scheduling."""
from .runner import is_finished, run_all
from .spec import ExperimentSpec, PlannedRun, expand, list_experiments, load_experiment

__all__ = ["ExperimentSpec", "PlannedRun", "expand", "is_finished", "list_experiments", "load_experiment",
           "run_all"]
