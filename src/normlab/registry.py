"""Registries without import lists: a decorator factory for name -> class tables (norm kinds, probes),
and folder discovery (every module of a package is imported once, so the file *is* the registration).

A name registered twice is an error, and the class learns its own key (so plots, configs and file
names use the same string). `grep -rn 'register_norm("' src/` still lists every variant.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable


def registrar(table: dict, what: str, attr: str) -> Callable[[str], Callable]:
    def register(name: str):
        def wrap(cls):
            if name in table:
                raise KeyError(f"{what} {name!r} is registered twice")
            setattr(cls, attr, name)
            table[name] = cls
            return cls
        return wrap
    return register


def import_all(package: str, path, skip: tuple[str, ...] = ()) -> list[str]:
    """Import every module of `package` (its __path__) except `skip` and _private ones; return their names."""
    names = sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_") and m.name not in skip)
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
