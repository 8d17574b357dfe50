"""An experiment is one folder: experiments/<name>/experiment.yaml (+ metrics.py, figures.py).

experiment.yaml holds the run config (`base`), the variants (a mapping name -> dotted overrides, a
`grid` of axes whose product names the variants, or `variants_from: valid_pairs` for the
registries' validity matrix), the default seeds and why they suffice, presets, the source's own
setup, and the claims as data (claims.py). `expand` turns it into one validated RunConfig per
(variant, seed); every claim's variants are checked when the experiment loads. Folders are
discovered, never listed: adding an experiment is adding a folder.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import itertools
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from ..config import ConfigError, RunConfig, build_config, from_dict, read_yaml
from ..config.rules import NAME
from ..report.claims import ClaimSpec, parse_claims

EXPERIMENT_DIR = Path(__file__).resolve().parent
MAX_SEEDS = 1000
MAX_RUNS = 10_000   # variants x seeds of one setup: the largest shipped is ~500; 10,000 configs take ~30 s to
                    # build and weeks of CPU to train, so more is a typo (a 1,000-value axis), refused at load


@dataclass
class ExperimentSpec:
    name: str = ""
    """experiment name (= its folder)"""
    title: str = ""
    """one-line title for the report"""
    description: str = ""
    """what is compared and how"""
    seed_ref: str = ""
    """the public seed experiment this reproduces (000-004), if any"""
    source: str = ""
    """where the source's numbers come from (seed README, paper table ...)"""
    seeds: int = 5
    """default number of training seeds (0..seeds-1)"""
    seeds_why: str = ""
    """why the default seed count suffices (power for the source's effect, or the CPU time it costs)"""
    jobs: int = 2
    """processes that train in parallel"""
    base: dict = field(default_factory=dict)
    """the shared run config"""
    variants: dict = field(default_factory=dict)
    """variant name -> {dotted.key: value} overrides"""
    grid: list = field(default_factory=list)
    """axes [{name: overrides}, ...]: one variant per combination, named name1_name2_..."""
    variants_from: str = ""
    """'valid_pairs': one variant per valid norm kind x placement of the registries (the zoo)"""
    groups: dict = field(default_factory=dict)
    """group name -> list of variants or a glob ('rmsnorm-pre_*'): a side of a claim over several variants"""
    presets: dict = field(default_factory=dict)
    """preset name -> {dotted.key: value} overrides for every variant (`normlab run X --preset smoke`); two
    reserved keys: `variants: [names or globs]` runs only those, `axes: {grid value: {dotted.key: value}}`
    overrides the variants whose name has that '_'-separated part (a gpu preset's own widths)"""
    seed_setup: dict = field(default_factory=dict)
    """the source's own setup (data, params, steps, tokens ...), shown beside ours in the report"""
    claims: list = field(default_factory=list)
    """the source's claims as data (experiments/claims.py)"""
    probe_figures: list = field(default_factory=list)
    """probes (registry names) whose figures the report draws in full by default; every other probe's per-layer
    curves are collapsed into one overview figure (`normlab report DIR --figures all` draws them all)"""
    folder: str = ""
    """filled by the loader: the experiment's folder"""

    @property
    def path(self) -> Path:
        return Path(self.folder)

    def module(self, name: str) -> ModuleType | None:
        """The folder's optional metrics.py / figures.py, imported once (its metrics register themselves)."""
        return load_module(self.path / f"{name}.py", f"normlab.experiments._{self.name.replace('-', '_')}.{name}")

    @property
    def claim_specs(self) -> list[ClaimSpec]:
        if "_claims" not in self.__dict__:
            self.__dict__["_claims"] = parse_claims(self.claims, self.name)
        return self.__dict__["_claims"]

    @property
    def groups_resolved(self) -> dict[str, list[str]]:
        return resolve_groups(self)


@dataclass
class PlannedRun:
    variant: str
    seed: int
    cfg: RunConfig
    run_dir: Path


def load_module(path: Path, qualname: str) -> ModuleType | None:
    if not path.is_file():
        return None
    if qualname in sys.modules:
        return sys.modules[qualname]
    spec = importlib.util.spec_from_file_location(qualname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualname] = module
    spec.loader.exec_module(module)
    return module


def list_experiments() -> list[str]:
    return sorted(p.parent.name for p in EXPERIMENT_DIR.glob("*/experiment.yaml"))


def experiment_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"experiment file {name} does not exist")
        return path
    if path.is_dir() and (path / "experiment.yaml").is_file():
        return path / "experiment.yaml"
    candidate = EXPERIMENT_DIR / name / "experiment.yaml"
    if candidate.is_file():
        return candidate
    import difflib

    known = list_experiments()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError(f"no experiment named {name!r}; shipped: {', '.join(known)}{hint}")


def load_experiment(name: str) -> ExperimentSpec:
    path = experiment_path(name)
    data = read_yaml(path)
    if not any(k in data for k in ("variants", "grid", "variants_from")):
        raise ConfigError(f"{path} is a run config, not an experiment (no `variants`); use `normlab train {name}`")
    spec = from_dict(ExperimentSpec, data, source=str(path))
    spec.folder = str(path.parent)
    spec.name = spec.name or path.parent.name
    for what, name in [("name", spec.name), *(("preset", p) for p in spec.presets)]:
        if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:  # both become folder names
            raise ConfigError(f"{path}: {what} {name!r} must be one folder name (letters, digits and . _ + = -, "
                              "no '/' and no '..')")
    if not 1 <= spec.seeds <= MAX_SEEDS or not 1 <= spec.jobs <= 64:
        raise ConfigError(f"{path}: seeds must be in [1, {MAX_SEEDS}] and jobs in [1, 64]")
    _refuse_a_shipped_name(spec, path)
    _check_shapes(spec, path)
    check_run_count(path, _variant_count(spec), spec.seeds)   # before a grid's product is built
    spec.variants = all_variants(spec, path)
    check_presets(spec, path)
    groups = resolve_groups(spec)   # a bad group is refused now, not after training (the report resolves them)
    _check_probe_figures(spec, path)
    spec.module("metrics")  # registers the folder's metrics and preconditions before the claims are checked
    for claim in spec.claim_specs:
        claim.check_sides(spec.variants, groups)
    return spec


def _refuse_a_shipped_name(spec: ExperimentSpec, path: Path) -> None:
    """A user's YAML may not take a shipped experiment's name: the name is the folder under --out (runs/prepost),
    so it would overwrite the shipped experiment's experiment.json, results and report there."""
    shipped = EXPERIMENT_DIR / spec.name / "experiment.yaml"
    if shipped.is_file() and path.resolve() != shipped.resolve():
        raise ConfigError(f"{path}: name {spec.name!r} is a shipped experiment's, whose folder (<out>/{spec.name}) it "
                          "would overwrite; give yours another name (name: my-" + spec.name + ")")


def _check_shapes(spec: ExperimentSpec, path: Path) -> None:
    """The containers the loader walks: grid axes map names to overrides, groups map names to a glob or a list of
    them, and no variant, axis value or preset sets train.seed (the seeds come from `seeds` and --seeds)."""
    if not isinstance(spec.grid, list) or not all(isinstance(a, dict) and a and all(
            isinstance(o, dict) for o in a.values()) for a in spec.grid):
        raise ConfigError(f"{path}: grid must be a list of axes, each mapping value names to overrides "
                          "(- {small: {model.d_model: 16}, big: {model.d_model: 32}})")
    if not isinstance(spec.groups, dict) or not all(isinstance(m, str) or (isinstance(m, list) and all(
            isinstance(x, str) for x in m)) for m in spec.groups.values()):
        raise ConfigError(f"{path}: groups must map a group name to a variant glob or a list of them "
                          "(groups: {rms: 'rmsnorm-*'})")
    overrides = [(f"variant {n!r}", o) for n, o in (spec.variants or {}).items()] if isinstance(spec.variants, dict) \
        else []
    overrides += [(f"grid value {n!r}", o) for axis in spec.grid for n, o in axis.items()]
    for n, preset in spec.presets.items() if isinstance(spec.presets, dict) else ():
        axes = preset.get("axes") if isinstance(preset, dict) else None
        overrides += [(f"preset {n!r}", preset)]
        overrides += [(f"preset {n!r} axis {v!r}", o) for v, o in axes.items()] if isinstance(axes, dict) else []
    for what, changes in overrides:
        if isinstance(changes, dict) and "train.seed" in changes:
            raise ConfigError(f"{path}: {what} sets train.seed; the seeds come from `seeds:` and `normlab run "
                              "--seeds` (e.g. --seeds 10-14 or --seeds 3,7,11), so remove it")


PROBE_DIR = Path(__file__).resolve().parent.parent / "probes"   # one module per probe, named as registered
NOT_PROBES = ("__init__", "base", "recorder")


def _check_probe_figures(spec: ExperimentSpec, path: Path) -> None:
    """probe_figures names registered probes; checked by their module files (the registry would import torch)."""
    known = sorted(f.stem for f in PROBE_DIR.glob("*.py") if f.stem not in NOT_PROBES)
    names = spec.probe_figures if isinstance(spec.probe_figures, list) else [spec.probe_figures]
    bad = [n for n in names if not isinstance(n, str) or n not in known]
    if bad:
        raise ConfigError(f"{path}: probe_figures: {', '.join(map(repr, bad))} is not a probe; allowed: "
                          f"{', '.join(known)}")


def _variant_count(spec: ExperimentSpec) -> int:
    count = len(spec.variants) if isinstance(spec.variants, dict) else 0
    if spec.grid:
        count += math.prod(len(axis) for axis in spec.grid)
    return count + (200 if spec.variants_from else 0)   # valid_pairs: ~70, counted generously


def check_run_count(where, n_variants: int, n_seeds: int) -> None:
    if n_variants * n_seeds > MAX_RUNS:
        raise ConfigError(f"{where}: {n_variants} variants x {n_seeds} seeds = {n_variants * n_seeds} runs, more than "
                          f"the {MAX_RUNS} one experiment may have; use fewer grid values or seeds (or split it)")


def all_variants(spec: ExperimentSpec, path: Path) -> dict:
    variants = dict(spec.variants)
    for combo in itertools.product(*[list(axis.items()) for axis in spec.grid]) if spec.grid else []:
        variants["_".join(name for name, _ in combo)] = {k: v for _, o in combo for k, v in o.items()}
    if spec.variants_from:
        if spec.variants_from != "valid_pairs":
            raise ConfigError(f"{path}: variants_from={spec.variants_from!r}; the only generator is valid_pairs")
        variants.update(pair_variants())
    if not variants:
        raise ConfigError(f"{path}: no variants")
    for name, changes in variants.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,120}", str(name)) or not isinstance(changes, dict):
            raise ConfigError(f"{path}: variant {name!r} must be a simple name mapping dotted keys to values")
    return variants


def pair_variants() -> dict:
    """One variant per valid (kind, placement) of the registries; a placement that uses no norm once, by its name."""
    from ..model import kind_is_used, valid_pairs

    out = {}
    for kind, placement in valid_pairs():
        if kind_is_used(placement):
            out[f"{kind}-{placement}"] = {"model.norm.kind": kind, "model.norm.placement": placement}
        else:
            out.setdefault(placement, {"model.norm.placement": placement})
    return out


def resolve_groups(spec: ExperimentSpec) -> dict[str, list[str]]:
    """Declared groups (lists or globs) plus one group per grid-axis value (every variant built with it)."""
    groups: dict[str, list[str]] = {}
    for axis in spec.grid:
        for value in axis:
            if "_" in value:
                raise ConfigError(f"experiment {spec.name}: grid value {value!r} must not contain '_' (it joins names)")
            groups[value] = [v for v in spec.variants if value in v.split("_")]
    for name, members in spec.groups.items():
        pattern = [members] if isinstance(members, str) else list(members)
        groups[name] = [v for v in spec.variants if any(fnmatch.fnmatchcase(v, p) for p in pattern)]
        if not groups[name]:
            raise ConfigError(f"experiment {spec.name}: group {name!r} matches no variant")
    return groups


def parse_seeds(text: str | int | None, default: int) -> list[int]:
    """`5` (0..4), `10-14`, `3,7,11` -> a sorted list of distinct seeds; None -> 0..default-1."""
    if text is None:
        return list(range(default))
    text = str(text).strip()
    shown = text if len(text) <= 40 else text[:40] + "..."
    bad = ConfigError(f"--seeds {shown!r}: give a count (5 = seeds 0..4), a range (10-14) or a list (3,7,11); "
                      f"1 to {MAX_SEEDS} seeds, each below 2^31")
    if len(text) > 20_000 or re.search(r"\d{11}", text):   # no seed has 11 digits (< 2^31); int() of 5,000 raises
        raise bad
    if m := re.fullmatch(r"(?:(\d+)-)?(\d+)", text):   # a count or a range: sized before any list is built
        lo, hi = (int(m.group(1)), int(m.group(2))) if m.group(1) else (0, int(m.group(2)) - 1)
        if not 0 <= hi - lo < MAX_SEEDS or hi >= 2 ** 31:
            raise bad
        seeds = list(range(lo, hi + 1))
    elif re.fullmatch(r"\d+(,\d+)+", text):
        seeds = sorted({int(s) for s in text.split(",")})
    else:
        seeds = []
    if not seeds or len(seeds) > MAX_SEEDS or max(seeds) >= 2 ** 31:
        raise bad
    return seeds


def seeds_label(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return "_".join(map(str, seeds))


PRESET_KEYS = ("variants", "axes")  # a preset's reserved keys (the rest are dotted overrides)


def check_presets(spec: ExperimentSpec, path: Path) -> None:
    """A preset's `variants` match some variant and its `axes` name parts of variant names (grid values, or
    a '_'-separated part of an explicit variant's name), each mapping keys to values."""
    values = {part for v in spec.variants for part in str(v).split("_")}
    for name, preset in spec.presets.items():
        if not isinstance(preset, dict):
            raise ConfigError(f"{path}: preset {name!r} must map dotted keys to values")
        only = preset.get("variants")
        if only is not None and (not isinstance(only, list) or not _selected(spec.variants, only)):
            raise ConfigError(f"{path}: preset {name!r}: `variants` must be a list of variant names or globs that "
                              f"matches at least one variant")
        for value, changes in (preset.get("axes") or {}).items():
            if value not in values or not isinstance(changes, dict):
                raise ConfigError(f"{path}: preset {name!r}: `axes` maps parts of variant names (grid values "
                                  f"such as {', '.join(sorted(values)[:6])}) to overrides; got {value!r}")


def _selected(variants: dict, patterns: list) -> list[str]:
    return [v for v in variants if any(fnmatch.fnmatchcase(v, str(p)) for p in patterns)]


def _preset(spec: ExperimentSpec, preset: str | None) -> dict:
    if not preset:
        return {}
    if preset not in spec.presets:
        have = ", ".join(spec.presets) or "none"
        raise ConfigError(f"experiment {spec.name} has no preset {preset!r}; presets: {have}")
    return spec.presets[preset]


def preset_overrides(spec: ExperimentSpec, preset: str | None) -> list[str]:
    """The dotted overrides of a named preset (applied before the CLI's own overrides)."""
    return [f"{k}={_yaml_scalar(v)}" for k, v in _preset(spec, preset).items() if k not in PRESET_KEYS]


def preset_variants(spec: ExperimentSpec, preset: str | None) -> dict[str, list[str]]:
    """The variants a preset runs (all, or those its `variants` globs match), each with the overrides its
    `axes` give the grid values the variant is built from."""
    p = _preset(spec, preset)
    names = _selected(spec.variants, p["variants"]) if p.get("variants") is not None else list(spec.variants)
    axes = p.get("axes") or {}
    return {v: [f"{k}={_yaml_scalar(x)}" for value in v.split("_") if value in axes for k, x in axes[value].items()]
            for v in names}


WATCHING_ONLY = ("train.trackers", "train.print_every")  # how a run is watched, not what it computes: same folder


def watching_only(override: str) -> bool:
    """True for an override that changes how runs are watched (trackers, log lines), not what they compute."""
    return override_key(override) in WATCHING_ONLY


def experiment_dir_name(spec: ExperimentSpec, seeds: list[int], preset: str | None, overrides: list[str]) -> str:
    """runs/<name> for the default setup; a changed preset, seed set or override set gets its own folder,
    so two setups never share (or silently extend) each other's run directories."""
    import hashlib

    name = spec.name + (f"-{preset}" if preset else "")
    if seeds != list(range(spec.seeds)):
        name += f"-seeds{seeds_label(seeds)}"
    changed = [o for o in overrides if not watching_only(o)]
    if changed:
        name += "-mod" + hashlib.sha1("\n".join(sorted(changed)).encode()).hexdigest()[:6]
    return name


def expand(spec: ExperimentSpec, overrides: list[str] = (), seeds: list[int] | None = None,
           out_dir: str | None = None, preset: str | None = None, exp_name: str | None = None) -> list[PlannedRun]:
    """variants x seeds -> validated RunConfigs (every one validated before any training starts)."""
    shared, scoped = split_scoped(spec, overrides)
    for o in overrides:
        if override_key(o) == "train.seed":
            raise ConfigError(f"override {o!r}: under `normlab run` the seeds come from --seeds (e.g. --seeds 10-14 "
                              "or --seeds 3,7,11), not from train.seed")
    seeds = list(range(spec.seeds)) if seeds is None else list(seeds)
    planned = []
    flat = preset_overrides(spec, preset)
    folder = exp_name or experiment_dir_name(spec, seeds, preset, list(overrides))
    chosen = preset_variants(spec, preset)
    check_run_count(f"experiment {spec.name}", len(chosen), len(seeds))   # before thousands of configs are built
    for variant, axis_overrides in chosen.items():
        variant_overrides = [f"{k}={_yaml_scalar(v)}" for k, v in spec.variants[variant].items()]
        for seed in seeds:
            cfg = build_config([(spec.base, f"{spec.name}/experiment.yaml base")],
                               variant_overrides + flat + axis_overrides + shared + scoped.get(variant, [])
                               + [f"train.seed={seed}"])
            root = Path(out_dir or cfg.out_dir) / folder
            cfg.name, cfg.out_dir = f"{variant}-seed{seed}", str(root)
            planned.append(PlannedRun(variant, seed, cfg, root / cfg.name))
    return planned


def override_key(override: str) -> str:
    """The dotted key an override sets, without a VARIANT: scope (`nanogpt:data.source=...` -> data.source)."""
    key = override.split("=", 1)[0].strip().lstrip("-")
    return key.split(":", 1)[1] if ":" in key else key


def split_scoped(spec: ExperimentSpec, overrides) -> tuple[list[str], dict[str, list[str]]]:
    """(overrides for every variant, {variant: its own}): `VARIANT:key=value` sets key for that variant only (after
    the shared ones), e.g. calibration's two peers read two corpora: `nanogpt:data.source=text:train.txt`."""
    shared: list[str] = []
    scoped: dict[str, list[str]] = {}
    for o in overrides:
        key = o.split("=", 1)[0]
        if ":" not in key:
            shared.append(o)
            continue
        variant, rest = o.split(":", 1)
        if variant not in spec.variants:
            raise ConfigError(f"override {o!r}: {variant!r} is not a variant of {spec.name}; VARIANT:key=value "
                              f"scopes an override to one of: {', '.join(spec.variants)}")
        scoped.setdefault(variant, []).append(rest)
    return shared, scoped


def replaced_variant_keys(spec: ExperimentSpec, overrides) -> dict[str, list[str]]:
    """{unscoped override: the variants that set that key themselves}: such an override replaces what those
    variants differ by (calibration's makemore reads names; `data.source=...` would give it nanoGPT's text)."""
    out = {}
    for o in split_scoped(spec, overrides)[0]:
        key, value = override_key(o), o.split("=", 1)[1].strip() if "=" in o else None
        setting = [v for v, values in spec.variants.items() if key in values and _yaml_scalar(values[key]) != value]
        if setting:
            out[o] = setting
    return out


def _yaml_scalar(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
