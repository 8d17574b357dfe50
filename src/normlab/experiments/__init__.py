"""Experiments: one folder each (experiment.yaml + optional metrics.py / figures.py), sweep expansion,
parallel (and stacked) training, and the report of the result."""
from .run import run_experiment
from .runner import Sweep, Task, plan_tasks, run_state
from .spec import (ExperimentSpec, PlannedRun, expand, list_experiments, load_experiment, parse_seeds,
                   preset_overrides)

__all__ = ["ExperimentSpec", "PlannedRun", "Sweep", "Task", "expand", "list_experiments", "load_experiment",
           "parse_seeds", "plan_tasks", "preset_overrides", "run_experiment", "run_state"]
