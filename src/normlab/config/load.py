"""YAML files + dotted CLI overrides -> strict `from_dict` -> `validate()`.

Order: dataclass defaults, then YAML files (later wins), then `a.b.c=value` overrides, then
strict conversion (unknown keys and wrong types are errors naming the dotted key, its source
and a close match), then the cross-field rules registered in `config.rules`.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml

from . import yamlsafe
from .rules import validate
from .schema import ConfigError, Range, RunConfig

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
CONFIG_DIRS = (_PACKAGE_DIR / "configs", _PACKAGE_DIR / "experiments")


def _suggest(word: str, options, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.5)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _float_or_none(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _convert(value: Any, tp: Any, path: str, source: str) -> Any:
    """Check `value` against the annotation `tp` (and its Range, if any); return it converted (int -> float only)."""
    if get_origin(tp) is Annotated:
        base, *extras = get_args(tp)
        value = _convert(value, base, path, source)
        for extra in extras:
            if isinstance(extra, Range):
                extra.check(value, path, source)
        return value
    if tp is object:
        return value
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} ({source}) must be a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, source, prefix=path + ".")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{path}={value!r} ({source}) is not allowed; choose one of: "
                f"{', '.join(map(str, allowed))}{_suggest(str(value), allowed)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r} ({source}) must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}={value!r} ({source}) must be an integer")
        return value
    if tp is float:
        if isinstance(value, str):
            value = _float_or_none(value)  # YAML 1.1 reads "3e-3" (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r} ({source}) must be a number")
        if not math.isfinite(value):
            raise ConfigError(f"{path}={value!r} ({source}) must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={value!r} ({source}) must be a string")
        return value
    if tp is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r} ({source}) must be a list, e.g. [0.9, 0.95]")
        return list(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}={value!r} ({source}) must be a mapping")
        return dict(value)
    raise TypeError(f"unsupported annotation {tp!r} at {path}")  # a schema bug, not user input


def from_dict(cls, data: dict, source: str = "<dict>", prefix: str = ""):
    """Build dataclass `cls` from a nested dict, refusing unknown keys and wrong types."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                f"unknown key {prefix}{key} ({source}){_suggest(key, names, prefix)}"
                f" -- valid keys here: {', '.join(names)}")
        kwargs[key] = _convert(value, hints[key], prefix + key, source)
    return cls(**kwargs)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """'model.norm.kind=dyt' -> (['model','norm','kind'], 'dyt'); the value follows YAML scalar rules."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.lr=3e-3")
    key, raw = text.split("=", 1)
    key = key.strip().lstrip("-")
    if not key:
        raise ConfigError(f"override {text!r} has no key before '='")
    value = yamlsafe.loads(raw, f"override {text!r}") if raw.strip() else ""
    return key.split("."), value


def _tag_sources(data: Any, source: str, prefix: str, sources: dict) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            sources[path] = source
            if key != "options":
                _tag_sources(value, source, path + ".", sources)


def apply_override(tree: dict, path: list[str], value: Any) -> dict:
    for i in range(1, len(path)):
        if _is_value(path[:i]):
            raise ConfigError(f"override {'.'.join(path)}: {'.'.join(path[:i])} is a value, not a section; "
                              f"set it directly ({'.'.join(path[:i])}=...)")
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part} is a value, not a section")
    if isinstance(node.get(path[-1]), dict) and path[-1] != "options" and not isinstance(value, dict):
        raise ConfigError(f"override {'.'.join(path)}={value!r}: {'.'.join(path)} is a section; set its keys "
                          f"({'.'.join(path)}.<key>=value)")
    if isinstance(value, dict) and path[-1] != "options" and _is_section(path):
        raise ConfigError(f"override {'.'.join(path)}={value!r}: {'.'.join(path)} is a section; set its keys one "
                          f"by one ({'.'.join(path)}.<key>=value) instead of replacing the whole section")
    node[path[-1]] = value
    return tree


def _reached_type(path: list[str]):
    """The type a dotted path reaches in RunConfig: a section (dataclass) when every part is one, else the first
    plain type met along it (train.lr -> float; a mapping such as model.norm.options -> dict); None when a part
    is not a key there (from_dict names those)."""
    cls = RunConfig
    for part in path:
        hints = _hints(cls)
        if part not in hints:
            return None
        tp = hints[part]
        tp = get_args(tp)[0] if get_origin(tp) is Annotated else tp
        if not dataclasses.is_dataclass(tp):
            return tp
        cls = tp
    return cls


def _is_value(path: list[str]) -> bool:
    """True when the dotted path names a plain value of RunConfig (train.lr), which has no keys below it;
    False for sections, mappings (model.norm.options) and unknown keys."""
    tp = _reached_type(path)
    return tp is not None and not dataclasses.is_dataclass(tp) and not (tp is dict or get_origin(tp) is dict)


def _is_section(path: list[str]) -> bool:
    """True when the dotted path names a dataclass section of RunConfig (model, train, model.norm ...)."""
    return dataclasses.is_dataclass(_reached_type(path))


def find_config(name: str) -> Path:
    """A YAML path, or the name of a shipped config / experiment (`debug`, `prepost`)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file {name} does not exist")
        return path
    for candidate in (CONFIG_DIRS[0] / f"{name}.yaml", CONFIG_DIRS[1] / name / "experiment.yaml"):
        if candidate.is_file():
            return candidate
    shipped = sorted([p.stem for p in CONFIG_DIRS[0].glob("*.yaml")] +
                     [p.parent.name for p in CONFIG_DIRS[1].glob("*/experiment.yaml")])
    raise ConfigError(f"no config named {name!r}; shipped: {', '.join(shipped)}{_suggest(name, shipped)}")


def read_yaml(path: Path) -> dict:
    data = yamlsafe.read_file(Path(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (model, data, train, ...)")
    return data


def run_section(data: dict) -> dict:
    """An experiment YAML keeps the run config under `base`; a plain config is the run config."""
    is_experiment = any(k in data for k in ("variants", "grid", "variants_from"))
    return data.get("base", {}) if is_experiment else data


def build_config(layers: list[tuple[dict, str]], overrides: list[str] = ()) -> RunConfig:
    """Merge (dict, source) layers and CLI overrides into a validated RunConfig."""
    tree: dict = {}
    sources: dict[str, str] = {}
    for data, source in layers:
        tree = _deep_merge(tree, copy.deepcopy(data))  # overrides below must never edit the caller's dicts
        _tag_sources(data, source, "", sources)
    for text in overrides:
        path, value = parse_override(text)
        apply_override(tree, path, value)
        sources[".".join(path)] = f"CLI override {text!r}"
    try:
        cfg = from_dict(RunConfig, tree, source="config")
    except ConfigError as err:
        raise ConfigError(_with_source(str(err), sources)) from None
    validate(cfg, sources)
    return cfg


def _with_source(message: str, sources: dict[str, str]) -> str:
    # from_dict only knows "config"; replace it with the file or CLI flag the key came from.
    for path in sorted(sources, key=len, reverse=True):
        parts = path.split(".")
        prefixes = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]  # `bogus.key=1`: "unknown key bogus"
        if f"{path}=" in message or any(f"{p} (config)" in message for p in prefixes):
            return message.replace("(config)", f"({sources[path]})")
    return message


def load_config(name_or_path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Load a shipped config or experiment by name (or a YAML path) and apply dotted overrides.

    Unless the YAML or an override sets `name`, the run is named after the config (`debug`, a file's
    stem) or, for an experiment's base config, `<experiment>-base`: runs/<experiment>/ is the folder
    `normlab run <experiment>` fills with its variant-seed runs.
    """
    layers = []
    if name_or_path is not None:
        path = find_config(str(name_or_path))
        data = read_yaml(path)
        layers.append(({"name": _default_name(path, data)}, f"named after {path.name}"))
        layers.append((run_section(data), str(path.name)))
    return build_config(layers, list(overrides))


def _default_name(path: Path, data: dict) -> str:
    stem = path.parent.name if path.name == "experiment.yaml" else path.stem
    name = re.sub(r"[^A-Za-z0-9._+=-]+", "-", stem).lstrip(".-")[:190] or "run"
    return f"{name}-base" if run_section(data) is not data else name


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
