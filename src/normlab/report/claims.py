"""Declared claims: what an experiment.yaml says, and the evidence a set of runs gives for it.

A claim reads like the sentence it tests:

    - id: pre-below-post
      text: "Pre-Norm ends below Post-Norm (avg train loss, last 100 steps)"
      source: "seed 003 README, Performance Comparison table"
      seed_value: "pre 2.36, post 2.62"
      seed_effect: -0.26                  # the source's own a - b (metric units): sizes a replication
      metric: {name: mean_train_loss, last: 100}
      compare: "pre < post"               # a < b | a > b | a ~ b (with margin); parts joined by ';'
      diverged: nee                       # a run whose metric is undefined: nee | ln_vocab | <number>
      precondition: {name: samples_nonempty, variant: pre}

Each part is tested on per-seed values (paired by seed: same seed, same data order and init) with
report/evidence.py; a count metric ("k of n samples") is tested by Fisher's exact test. A claim of
several parts holds only if every part does (intersection-union: its p is the largest part p).
p values are Holm-adjusted across the experiment's claims. Verdicts: supported, contradicted, not
enough evidence, untestable here (the precondition failed: the phenomenon is absent at this scale).
A run whose metric is undefined (it diverged) is never dropped silently: with `diverged: nee` the
verdict is "not enough evidence" and the count is shown; otherwise it counts as the stated value.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..config import ConfigError, from_dict
from . import evidence as ev
from .metrics import PRECONDITIONS, get_metric
from .runs import RunData

_PART = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._+=-]*)\s*(<|>|~)\s*([A-Za-z0-9._+=-]+)\s*$")
DIRECTION = {"<": "less", ">": "greater", "~": "equivalent"}


@dataclass
class ClaimSpec:
    id: str = ""
    """short unique name (results.json, replication tables)"""
    text: str = ""
    """the claim in words, as the source makes it"""
    source: str = ""
    """where the source's number comes from: seed README section, paper table or figure"""
    seed_value: str = ""
    """the source's numbers, as text"""
    seed_effect: object = None
    """the source's own effect a - b per part (a number or a list), in the metric's units"""
    metric: object = ""
    """a metric name, or {name: ..., <its arguments>}"""
    compare: str = ""
    """'a < b', 'a > b' or 'a ~ b' (margin); several parts joined by ';'; b may be a number"""
    margin: float = 0.0
    """equivalence margin for '~' claims, stated before the run"""
    diverged: object = "nee"
    """how a run with an undefined metric counts: nee (verdict: not enough evidence), ln_vocab, or a number"""
    precondition: dict = field(default_factory=dict)
    """{name: <precondition>, ...arguments}: the phenomenon must be present, else 'untestable here'"""
    note: str = ""
    """how our setting or wording differs from the source's"""
    constant: bool = False
    """b is a fixed constant (float32's exp() overflow, a chance level), not a number the source measured in its
    setup: a preset or override that changes the setup leaves the claim testable"""
    setup_free: list = field(default_factory=list)
    """setting keys (or prefixes ending in '.') whose override does not move the setup b belongs to, e.g.
    data.source for a peer's own corpus passed as a local file (calibration)"""

    def metric_call(self) -> tuple[str, dict]:
        if isinstance(self.metric, str):
            return self.metric, {}
        if isinstance(self.metric, dict) and isinstance(self.metric.get("name"), str):
            kw = {k: v for k, v in self.metric.items() if k != "name"}
            return self.metric["name"], kw
        raise ConfigError(f"claim {self.id}: metric must be a name or {{name: ..., args}}, got {self.metric!r}")

    @property
    def parts(self) -> list[tuple[str, str, str]]:
        out = []
        for text in self.compare.split(";"):
            m = _PART.match(text)
            if not m:
                raise ConfigError(f"claim {self.id}: compare part {text.strip()!r} must look like 'a < b', 'a > b' "
                                  "or 'a ~ b'")
            out.append(m.groups())
        return out

    def seed_effects(self) -> list:
        effects = self.seed_effect if isinstance(self.seed_effect, list) else [self.seed_effect] * len(self.parts)
        return (list(effects) + [None] * len(self.parts))[: len(self.parts)]

    def check_sides(self, variants: dict, groups: dict) -> None:
        """Every side names a variant, a group or (b only) a number; the metric exists and fits the sides."""
        name, kw = self.metric_call()
        m = get_metric(name, f"claim {self.id}")
        for a, op, b in self.parts:
            for side in (a, b):
                if side not in variants and side not in groups and not (side is b and _number(b) is not None):
                    raise ConfigError(f"claim {self.id}: {side!r} is not a variant or group of this experiment "
                                      f"(variants: {', '.join(variants)})")
            if op == "~" and not self.margin > 0:
                raise ConfigError(f"claim {self.id}: an equivalence claim ('~') needs a margin > 0")
            if m.scope == "run" and (a in groups and a not in variants or b in groups and b not in variants):
                raise ConfigError(f"claim {self.id}: metric {name} is per run; a group side needs a group metric")
            if m.scope == "pair" and (_number(b) is not None or op == "~"):
                raise ConfigError(f"claim {self.id}: pair metric {name} compares two variants with < or >")
        if self.precondition and self.precondition.get("name") not in PRECONDITIONS:
            raise ConfigError(f"claim {self.id}: unknown precondition {self.precondition.get('name')!r} "
                              f"(known: {', '.join(sorted(PRECONDITIONS))})")
        if not (self.diverged in ("nee", "ln_vocab") or isinstance(self.diverged, (int, float))):
            raise ConfigError(f"claim {self.id}: diverged must be nee, ln_vocab or a number")


def parse_claims(raw: list, experiment: str) -> list[ClaimSpec]:
    claims = []
    for i, item in enumerate(raw or []):
        if not isinstance(item, dict):
            raise ConfigError(f"experiment {experiment}: claim {i} must be a mapping")
        c = from_dict(ClaimSpec, item, source=f"experiment {experiment}, claim {i}", prefix="claims.")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", c.id or "") or not c.text or not c.compare:
            raise ConfigError(f"experiment {experiment}: claim {i} needs an id (lowercase, dashes), text and compare")
        claims.append(c)
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"experiment {experiment}: claim ids repeat: {ids}")
    return claims


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# ---- evaluation ---------------------------------------------------------------------------------

def _side_runs(side: str, groups: dict[str, list[RunData]], group_defs: dict) -> dict[int, list[RunData]]:
    members = [side] if side in groups else group_defs.get(side, [])
    out: dict[int, list[RunData]] = {}
    for v in members:
        for r in groups.get(v, []):
            out.setdefault(r.seed, []).append(r)
    return out


def _values(spec: ClaimSpec, side: str, groups, group_defs) -> tuple[dict[int, object], list[str]]:
    """{seed: value} for one side (None = undefined), and the runs that have not finished."""
    name, kw = spec.metric_call()
    m = get_metric(name, f"claim {spec.id}")
    by_seed = _side_runs(side, groups, group_defs)
    missing = sorted(r.run_dir.name for rs in by_seed.values() for r in rs if not r.finished)
    by_seed = {s: rs for s, rs in by_seed.items() if all(r.finished for r in rs)}
    if m.scope == "seeds":
        return m.fn(by_seed, **kw), missing
    if m.scope == "group":
        return {s: m.fn(rs, **kw) for s, rs in by_seed.items()}, missing
    return {s: _substitute(spec, rs[0], m.fn(rs[0], **kw)) for s, rs in by_seed.items()}, missing


def _substitute(spec: ClaimSpec, run: RunData, value):
    """A diverged run's undefined value, counted as the claim says (None stays None under `nee`)."""
    if value is not None or run.status != "diverged" or spec.diverged == "nee":
        return value
    return run.ln_vocab if spec.diverged == "ln_vocab" else float(spec.diverged)


@dataclass
class PartResult:
    a: str
    op: str
    b: str
    evidence: ev.Evidence | None
    seeds: list[int]
    undefined: dict[str, list[int]]
    missing: list[str]
    seed_effect: object = None
    verdict: str = ev.NOT_ENOUGH

    @property
    def direction(self) -> str:
        return DIRECTION[self.op]


def evaluate_part(spec: ClaimSpec, a: str, op: str, b: str, groups, group_defs) -> PartResult:
    name, kw = spec.metric_call()
    m = get_metric(name, f"claim {spec.id}")
    if m.scope == "pair":
        va, missing = _pair_values(spec, a, b, groups, kw)
        const = {s: 0.0 for s in va}
        vb, missing_b = const, []
    else:
        va, missing = _values(spec, a, groups, group_defs)
        number = _number(b) if b not in groups and b not in group_defs else None
        vb, missing_b = (({s: number for s in va}, []) if number is not None
                         else _values(spec, b, groups, group_defs))
    seeds = sorted(set(va) & set(vb))
    undefined = {side: [s for s in seeds if vals[s] is None] for side, vals in ((a, va), (b, vb))}
    ok = [s for s in seeds if va[s] is not None and vb[s] is not None]
    result = PartResult(a, op, b, None, seeds, {k: v for k, v in undefined.items() if v}, missing + missing_b)
    if len(ok) < 2 if not m.count else not ok:
        return result
    direction = DIRECTION[op]
    if m.count:
        (ka, na), (kb, nb) = (np.sum([va[s] for s in ok], axis=0), np.sum([vb[s] for s in ok], axis=0))
        result.evidence = ev.proportions(int(ka), int(na), int(kb), int(nb), direction)
    else:
        xa, xb = np.array([va[s] for s in ok], float), np.array([vb[s] for s in ok], float)
        if not (np.isfinite(xa).all() and np.isfinite(xb).all()):
            result.undefined["non-finite"] = [s for s, x, y in zip(ok, xa, xb) if not (math.isfinite(x) and
                                                                                       math.isfinite(y))]
            return result
        result.evidence = (ev.equivalence(xa, xb, spec.margin, discrete=m.discrete, units=m.units) if op == "~"
                           else ev.paired(xa, xb, direction, discrete=m.discrete, units=m.units))
    return result


def _pair_values(spec, a, b, groups, kw):
    m = get_metric(spec.metric_call()[0], f"claim {spec.id}")
    ra = {r.seed: r for r in groups.get(a, [])}
    rb = {r.seed: r for r in groups.get(b, [])}
    missing = sorted(r.run_dir.name for r in [*ra.values(), *rb.values()] if not r.finished)
    seeds = sorted(s for s in set(ra) & set(rb) if ra[s].finished and rb[s].finished)
    return {s: m.fn(ra[s], rb[s], **kw) for s in seeds}, missing


@dataclass
class Trained:
    """How the runs of this experiment folder differ from the experiment as shipped: `label` says by what ('preset
    smoke', 'overrides train.steps=40'), `changed` lists the 'key=value' settings that change what a run computes."""
    label: str = ""
    changed: list[str] = field(default_factory=list)


@dataclass
class ClaimResult:
    spec: ClaimSpec
    parts: list[PartResult]
    precondition: dict
    verdict: str = ev.NOT_ENOUGH
    p: float | None = None
    p_holm: float | None = None
    reasons: list[str] = field(default_factory=list)
    untestable: str = ""   # why what ran cannot test the claim (a variant not trained, the source's scale not run)

    @property
    def main(self) -> PartResult | None:
        """The part that decides: the one with the largest p (the weakest link of an intersection)."""
        tested = [p for p in self.parts if p.evidence is not None and p.evidence.p == p.evidence.p]
        return max(tested, key=lambda p: p.evidence.p) if tested else (self.parts[0] if self.parts else None)

    def as_dict(self) -> dict:
        main = self.main
        e = main.evidence if main else None
        return {
            "id": self.spec.id, "text": self.spec.text, "seed_value": self.spec.seed_value,
            "seed_source": self.spec.source, "verdict": self.verdict, "n": e.n if e else 0,
            "test": e.test if e else None, "p": _num(self.p), "p_holm": _num(self.p_holm),
            "effect": ({"estimate": _num(e.estimate), "ci95": [_num(e.ci95[0]), _num(e.ci95[1])],
                        "units": e.units, "size": e.effect_size} if e else None),
            "precondition": self.precondition, "reasons": self.reasons, "note": self.spec.note,
            "untestable": self.untestable or None,
            "parts": [{"compare": f"{p.a} {p.op} {p.b}", "verdict": p.verdict, "seeds": p.seeds,
                       "undefined": p.undefined, "missing": p.missing,
                       "evidence": p.evidence.as_dict() if p.evidence else None,
                       "power": ev.power_line(p.evidence, p.seed_effect) if p.evidence and
                       p.verdict == ev.NOT_ENOUGH and not p.evidence.n_a else None}
                      for p in self.parts]}


def _num(x):
    return None if x is None or not isinstance(x, (int, float)) or not math.isfinite(x) else float(x)


def _trained(side: str, groups: dict[str, list[RunData]], group_defs: dict) -> bool:
    return bool(groups.get(side)) or any(groups.get(v) for v in group_defs.get(side, []))


def untestable_here(spec: ClaimSpec, groups: dict[str, list[RunData]], group_defs: dict,
                    trained: Trained | None = None) -> str:
    """Why these runs cannot test the claim at all, or '': a side's variants were not trained (a preset's subset),
    or the claim compares with the source's absolute number (b a number other than 0, a sign, and not a declared
    constant) while a preset or override changed the setup the number belongs to."""
    trained = trained or Trained()
    absent = list(dict.fromkeys(side for a, _, b in spec.parts for side in (a, b)
                                if _number(side) is None and not _trained(side, groups, group_defs)))
    if absent:
        return f"{', '.join(absent)} not in {trained.label or 'the variants trained here'}"
    numbers = [b for _, _, b in spec.parts if _number(b) not in (None, 0.0) and b not in groups and not spec.constant]
    free = tuple(str(k) for k in spec.setup_free)
    keys = {c: c.split("=", 1)[0].split(":", 1)[-1] for c in trained.changed}   # nanogpt:data.source -> data.source
    changed = [c for c in trained.changed if not any(keys[c] == k or (k.endswith(".") and keys[c].startswith(k))
                                                     for k in free)]
    if numbers and changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        return (f"compares with the source's absolute number {numbers[0]}, and {trained.label} changes the setup it "
                f"belongs to ({shown})")
    return ""


def evaluate_claims(specs: list[ClaimSpec], groups: dict[str, list[RunData]], group_defs: dict,
                    trained: Trained | None = None) -> list[ClaimResult]:
    """Every claim's evidence and verdict; p values Holm-adjusted across the tested claims. `trained` says how
    these runs differ from the shipped experiment: a claim they cannot test is 'untestable here' and says why."""
    results = []
    for spec in specs:
        why = untestable_here(spec, groups, group_defs, trained)
        if why:
            results.append(ClaimResult(spec, [], {"ok": True, "reason": ""}, untestable=why))
            continue
        pre = {"ok": True, "reason": ""}
        if spec.precondition:
            kw = {k: v for k, v in spec.precondition.items() if k != "name"}
            ok, reason = PRECONDITIONS[spec.precondition["name"]](groups, **kw)
            pre = {"ok": bool(ok), "reason": reason}
        parts = [] if not pre["ok"] else [evaluate_part(spec, a, op, b, groups, group_defs) for a, op, b in spec.parts]
        for part, effect in zip(parts, spec.seed_effects()):
            part.seed_effect = effect
        ps = [p.evidence.p for p in parts if p.evidence is not None]
        p = max(ps) if parts and len(ps) == len(parts) and all(x == x for x in ps) else None
        results.append(ClaimResult(spec, parts, pre, p=p))
    for r, adjusted in zip(results, ev.holm([r.p for r in results])):
        r.p_holm = adjusted
        _decide(r)
    return results


def _decide(r: ClaimResult) -> None:
    if r.untestable:
        r.verdict = ev.UNTESTABLE
        r.reasons.append(f"untestable here: {r.untestable}")
        return
    if not r.precondition["ok"]:
        r.verdict = ev.UNTESTABLE
        r.reasons.append(f"precondition failed: {r.precondition['reason']}")
        return
    for part in r.parts:
        margin = r.spec.margin if part.op == "~" else None
        part.verdict = ev.verdict(part.evidence, part.direction, r.p_holm, margin=margin)
        if part.undefined:  # the left-out seeds could change the word: never more than not enough evidence
            part.verdict = ev.NOT_ENOUGH
            r.reasons.append(f"{part.a} {part.op} {part.b}: metric undefined for " + "; ".join(
                f"{side} seeds {seeds}" for side, seeds in part.undefined.items()) + " (diverged or no data)")
        if part.missing:
            r.reasons.append(f"{part.a} {part.op} {part.b}: runs not finished: {', '.join(part.missing)}")
        if part.evidence is None:
            r.reasons.append(f"{part.a} {part.op} {part.b}: fewer than 2 seeds with a value")
    words = [p.verdict for p in r.parts]
    if words and all(w == ev.SUPPORTED for w in words):
        r.verdict = ev.SUPPORTED
    elif ev.CONTRADICTED in words:
        r.verdict = ev.CONTRADICTED
    else:
        r.verdict = ev.NOT_ENOUGH
