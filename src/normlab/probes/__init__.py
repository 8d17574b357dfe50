"""PROBES registry: probe name -> reducer class; the Recorder that attaches them lives in recorder.py.

A probe reads the outputs the Recorder captured (module outputs matched by name globs) or the
model's parameters, and returns a small summary: floats (-> metrics.jsonl as probe/<name>/<key>)
and numpy arrays (-> probes/step_N.npz as <name>/<key>). One probe per file; every module of this folder
is imported (registry.import_all), so adding a probe is adding a file. Definitions: DESIGN.md (Probes), norm-methods.md sections 6 and 8.
"""
from ..registry import import_all
from .base import PROBES, Figure, Probe, describe, register_probe, resolve_names
from .recorder import Recorder, View, flatten, probe_model, unwrap

import_all(__name__, __path__, skip=("base", "recorder"))  # every other module of this folder is one probe

__all__ = ["Figure", "PROBES", "Probe", "Recorder", "View", "describe", "flatten", "probe_model", "register_probe",
           "resolve_names", "unwrap"]
