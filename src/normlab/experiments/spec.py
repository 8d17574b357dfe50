"""Experiment YAML -> ExperimentSpec -> one RunConfig per (variant, seed).

An experiment file has `base` (a run config), `variants` (name -> dotted overrides), `seeds` and
`jobs`. Run directories are named deterministically: <out_dir>/<experiment>/<variant>-seed<k>.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, RunConfig, build_config, find_config, from_dict, read_yaml

EXPERIMENT_DIR = Path(__file__).resolve().parent


@dataclass
class ExperimentSpec:
    name: str = ""
    """experiment name"""
    title: str = ""
    """one-line title for the report"""
    description: str = ""
    """what is compared and how"""
    seed_ref: str = ""
    """the public seed experiment this reproduces"""
    seeds: list = field(default_factory=lambda: [0])
    """training seeds"""
    jobs: int = 1
    """runs trained in parallel processes"""
    base: dict = field(default_factory=dict)
    """the shared run config"""
    variants: dict = field(default_factory=dict)
    """variant name -> {dotted.key: value} overrides"""
    presets: dict = field(default_factory=dict)
    """preset name -> {dotted.key: value} overrides for every variant (`normlab run X --preset gpu`)"""


@dataclass
class PlannedRun:
    variant: str
    seed: int
    cfg: RunConfig
    run_dir: Path


def list_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def load_experiment(name: str) -> ExperimentSpec:
    path = find_config(name)
    data = read_yaml(path)
    if "variants" not in data:
        raise ConfigError(f"{path} is a run config, not an experiment (no `variants`); use `normlab train {name}`")
    spec = from_dict(ExperimentSpec, data, source=path.name)
    if not spec.variants:
        raise ConfigError(f"{path}: `variants` is empty")
    return spec


def preset_overrides(spec: ExperimentSpec, preset: str | None) -> list[str]:
    """The dotted overrides of a named preset (applied before the CLI's own overrides)."""
    if not preset:
        return []
    if preset not in spec.presets:
        have = ", ".join(spec.presets) or "none"
        raise ConfigError(f"experiment {spec.name} has no preset {preset!r}; presets: {have}")
    return [f"{k}={_yaml_scalar(v)}" for k, v in spec.presets[preset].items()]


def expand(spec: ExperimentSpec, overrides: list[str] = (), seeds: list[int] | None = None,
           out_dir: str | None = None, preset: str | None = None) -> list[PlannedRun]:
    """variants x seeds -> validated RunConfigs (every one validated before any training starts)."""
    planned = []
    overrides = preset_overrides(spec, preset) + list(overrides)
    for variant, changes in spec.variants.items():
        if not isinstance(changes, dict):
            raise ConfigError(f"experiment {spec.name}: variant {variant!r} must map dotted keys to values")
        variant_overrides = [f"{k}={_yaml_scalar(v)}" for k, v in changes.items()]
        for seed in (spec.seeds if seeds is None else seeds):
            cfg = build_config([(spec.base, f"{spec.name}.yaml base")],
                               variant_overrides + list(overrides) + [f"train.seed={seed}"])
            root = Path(out_dir or cfg.out_dir) / spec.name
            name = f"{variant}-seed{seed}"
            cfg.name, cfg.out_dir = name, str(root)
            planned.append(PlannedRun(variant, seed, cfg, root / name))
    return planned


def _yaml_scalar(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
