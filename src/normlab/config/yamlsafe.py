"""YAML that cannot surprise: safe types only, no aliases, no duplicate keys, bounded size, UTF-8.

PyYAML's safe_load already refuses arbitrary Python objects. On top of that, aliases (*name) are
refused, because a file of nested aliases (the "billion laughs") expands to gigabytes in memory;
a key given twice in one mapping is an error (safe_load keeps the last silently); files over
MAX_BYTES and non-UTF-8 files are refused with the file named.
The parser is libyaml's where PyYAML has it (CSafeLoader: reading 175 lr-sweep config.yaml files took
1.73 s with the pure-Python parser, 0.50 s with it; a report-only re-run of that sweep reads ~500).
Its composer resolves an alias to the anchored node itself, so an alias is found as a node met twice
in the composed graph, before anything is constructed; libyaml refuses nesting over 1000 levels itself.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .schema import ConfigError

MAX_BYTES = 4 << 20


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value",
                                                        key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _refuse_aliases(root) -> None:
    """An alias (*name) is the anchored node met a second time; refused before construction could expand it."""
    seen, todo = set(), [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            raise yaml.constructor.ConstructorError(None, None, "YAML aliases (*name) are not allowed in normlab files",
                                                    node.start_mark)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            todo += [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value


def _load(text: str):
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_aliases(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def loads(text: str, where: str):
    try:
        return _load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if "maximum nesting depth" in problem:   # libyaml's own limit (1000 levels)
            raise ConfigError(f"{where}: nested too deeply to be a normlab config{at}") from None
        raise ConfigError(f"{where}: not valid YAML{at}: {problem}") from None
    except RecursionError:  # [[[[...]]]] thousands deep: the composer recurses once per level
        raise ConfigError(f"{where}: nested too deeply to be a normlab config") from None
    except (ValueError, TypeError, OverflowError) as err:  # a tag whose constructor refuses its text: !!float abc
        raise ConfigError(f"{where}: not a valid value ({str(err).splitlines()[0][:200]}); write plain YAML "
                          "values (a number, a string, true/false, a list, a mapping)") from None


def read_file(path: Path):
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path}: {size} bytes; a config file may have at most {MAX_BYTES}")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    return loads(text, str(path))
