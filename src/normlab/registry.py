"""One decorator factory for the name -> class registries (norm kinds, probes): a name registered twice
is an error, and the class learns its own key (so plots, configs and file names use the same string)."""
from __future__ import annotations

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
