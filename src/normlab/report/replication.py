"""Replication: do an experiment's verdicts hold on a second, disjoint seed set?

`normlab run prepost --seeds 5-9 --replicate runs/prepost` trains seeds 5-9 in their own folder
and compares each claim's verdict and effect with the original's results.json (evidence.md,
Replication): both supported (or both contradicted) = replicated; supported on one set and
contradicted on the other = failed to replicate; anything else (a not-enough-evidence on either
side) = not decided. Seed sets that overlap are refused: a replication needs fresh seeds.
"""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from ..rundir import atomic_write_text, read_json, write_json
from .evidence import CONTRADICTED, SUPPORTED
from .render import cell


def outcome(original: str, again: str) -> str:
    if original == again and original in (SUPPORTED, CONTRADICTED):
        return "replicated"
    if {original, again} == {SUPPORTED, CONTRADICTED}:
        return "failed to replicate"
    return "not decided"


def _effect(claim: dict) -> str:
    e = claim.get("effect") or {}
    ci = e.get("ci95") or [None, None]
    if e.get("estimate") is None:
        return "n/a"
    fmt = lambda x: "n/a" if x is None else f"{x:.3g}"  # noqa: E731
    return f"{fmt(e['estimate'])} [{fmt(ci[0])}, {fmt(ci[1])}] (n={claim.get('n')})"


def compare(original: dict, again: dict) -> list[dict]:
    first = {c["id"]: c for c in original.get("claims", [])}
    rows = []
    for c in again.get("claims", []):
        o = first.get(c["id"])
        if o is None:
            continue
        rows.append({"id": c["id"], "text": c["text"], "original": o["verdict"], "original_effect": _effect(o),
                     "replication": c["verdict"], "replication_effect": _effect(c),
                     "outcome": outcome(o["verdict"], c["verdict"])})
    return rows


def read_original(original_dir: Path, seeds: list[int]) -> dict:
    """The earlier run's results.json, checked before anything trains (a damaged one used to fail only after the
    whole sweep): a mapping with `seeds` (integers, disjoint from `seeds`) and `claims` (each with a string id,
    text and verdict, and an effect mapping or none)."""
    path = Path(original_dir) / "results.json"
    if not path.is_file():
        raise ConfigError(f"--replicate {original_dir}: no results.json there (run the original experiment first)")
    original = read_json(path)
    old_seeds, claims = original.get("seeds"), original.get("claims")
    if not isinstance(old_seeds, list) or not all(type(x) is int for x in old_seeds):
        raise ConfigError(f"--replicate {original_dir}: {path} has no list of integer `seeds`; it is damaged or not a "
                          "normlab results.json")
    if not isinstance(claims, list) or not all(
            isinstance(c, dict) and all(isinstance(c.get(k), str) for k in ("id", "text", "verdict"))
            and isinstance(c.get("effect") or {}, dict) for c in claims):
        raise ConfigError(f"--replicate {original_dir}: {path}: `claims` must be a list of claims, each with a string "
                          "id, text and verdict; it is damaged or not a normlab results.json")
    overlap = sorted(set(old_seeds) & set(seeds))
    if overlap:
        fresh = max([*old_seeds, *seeds]) + 1
        raise ConfigError(f"--replicate {original_dir}: its seeds overlap these ({', '.join(map(str, overlap[:10]))}); "
                          f"a replication needs disjoint seeds (e.g. --seeds {fresh}-{fresh + len(seeds) - 1})")
    return original


def write_replication(original_dir: Path, new_dir: Path) -> list[dict]:
    again = read_json(Path(new_dir) / "results.json")
    original = read_original(original_dir, again.get("seeds") or [])
    rows = compare(original, again)
    lines = ["## Replication", "", f"Original: {original_dir} (seeds {original.get('seeds')}); this run: seeds "
             f"{again.get('seeds')}.", "",
             "| claim | original: verdict, effect [95 % CI] | replication: verdict, effect [95 % CI] | outcome |",
             "|---|---|---|---|"]
    lines += [f"| {cell(r['text'])} | {r['original']}, {r['original_effect']} | {r['replication']}, "
              f"{r['replication_effect']} | **{r['outcome']}** |" for r in rows]
    atomic_write_text(Path(new_dir) / "replication.md", "\n".join(lines) + "\n")
    write_json(Path(new_dir) / "replication.json", {"original": str(original_dir), "rows": rows})
    return rows
