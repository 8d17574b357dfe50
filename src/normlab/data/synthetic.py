"""Synthetic sources: token streams generated in code from a stated process, any size, no download.

`synthetic:<name>?key=value&key=value` (e.g. `synthetic:bos-zipf?vocab=100&alpha=1.0`); every parameter is
range-checked when the config loads (one `error:` line, exit 2). Each row of a batch is one independent
sequence [BOS] s_1 ... s_T (BOS at position 0, as in Guo et al. and Liu's toy), so `data.batching` does not
apply. Rows are a pure function of (split, data seed, step, row): the train split draws with train.seed, the
validation and probe batches with data.split_seed's offsets (as for every corpus), and a salt per split keeps
the two apart even where the seeds coincide. A batch's `index` holds each row's 63-bit seed, so a row is
regenerated from its index alone (replay, ranks' slices, forensics).

Why ids and not documents of characters: the processes are defined on tokens (a copy rule, a Zipf law), the
rows must start with BOS and never be cut from a stream, and the exact entropy floor is a property of the
token process at a given length; generating characters and re-tokenizing would only add a way to drift.

Each process states what it generates (`about`) and its exact entropy floor: the expected loss, in nats per
predicted token over the T predicted positions of a row, of the Bayes-optimal predictor that knows the
process (computed from the transition matrices, not sampled). Reports show it beside the model's loss.

- `bigram-backcopy` (Guo et al. 2024, arXiv 2410.13835, "Active-dormant attention heads"): character bigram
  transitions P(b|a) counted on the embedded `names` corpus, each name wrapped as ".name." (27 symbols: a-z
  and "."); the k most frequent symbols are triggers. s_1 ~ the unigram law without the triggers; for i >= 2,
  if s_{i-1} is a trigger then s_i = s_{i-2} (the copy: the token before the trigger), else s_i ~ P(.|s_{i-1}).
  Since s_1 is no trigger, two triggers never follow each other, so the copied token is never a trigger.
  Floor: position 0 predicts s_1 (H of the start law); after a trigger the next token is determined (0);
  elsewhere H(P(.|s_i)), weighted by the exact marginal of s_i at each position (a Markov chain on pairs).
- `bos-zipf` (Ziming Liu 2026, "Sparse attention 5"): BOS, then i.i.d. tokens with P(r) proportional to
  r^-alpha, r = 1..vocab. Floor: the Zipf law's entropy at every position.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..config import ConfigError
from .batch import Batch
from .embedded import names_list

PREFIX = "synthetic:"
FORMAT_VERSION = 1
SPLIT_SALT = {"train": 0x5EED_7A1, "val": 0x5EED_FA1}


@dataclass(frozen=True)
class Param:
    kind: type
    default: object
    lo: float
    hi: float
    about: str

    def parse(self, source: str, key: str, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise ConfigError(f"data.source={source}: {key}={text!r} is not {'an integer' if self.kind is int else 'a number'} "
                              f"(allowed {self.lo:g} .. {self.hi:g})") from None
        if not (self.lo <= value <= self.hi) or (self.kind is float and not math.isfinite(value)):
            raise ConfigError(f"data.source={source}: {key}={text} is out of range (allowed {self.lo:g} .. {self.hi:g})")
        return value


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats (0 log 0 = 0)."""
    p = np.asarray(p, float)
    logs = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -(p * logs).sum(axis)


def _row_seeds(split: str, seed: int, step: int, n: int) -> torch.Tensor:
    """n row seeds (int64, >= 0) of batch (split, seed, step)."""
    ss = np.random.SeedSequence([SPLIT_SALT[split], int(seed), int(step)])
    return torch.from_numpy(ss.generate_state(n, np.uint64).astype(np.int64) & ((1 << 62) - 1))


def _uniforms(index: torch.Tensor, n: int) -> np.ndarray:
    """(rows, n) uniforms in [0, 1), row r from its own generator seeded by index[r]."""
    return np.stack([np.random.default_rng(int(s)).random(n) for s in index.tolist()]) if len(index) else \
        np.zeros((0, n))


def _draw(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: cum (rows, V) cumulative laws with cum[:, -1] == 1, u (rows,) -> ids (rows,)."""
    return (cum <= u[:, None]).sum(1)


def _cumulative(p: np.ndarray) -> np.ndarray:
    cum = np.cumsum(p, axis=-1)
    cum[..., -1] = 1.0
    return cum


@dataclass
class Process:
    """A synthetic generative process over `symbols` (ids 0..n-1) plus BOS (id n)."""
    name: str
    params: dict
    about: str = ""
    symbols: list = field(default_factory=list)

    @property
    def bos(self) -> int:
        return len(self.symbols)

    @property
    def spec(self) -> str:
        """The canonical source string (every parameter, defaults included)."""
        return f"{PREFIX}{self.name}?" + "&".join(f"{k}={v}" for k, v in sorted(self.params.items()))

    def rows(self, index: torch.Tensor, T: int) -> np.ndarray:
        """(len(index), T + 1) ids: BOS then T tokens, row r a pure function of index[r]."""
        raise NotImplementedError

    def entropy_floor(self, T: int) -> float:
        """Best achievable mean loss (nats) over the T predicted positions of a row."""
        raise NotImplementedError

    def roles(self, x: torch.Tensor) -> torch.Tensor | None:
        """Per input position, 1 where the next token is determined by a rule (a trigger), else 0; None if the
        process has no such roles."""
        return None


class BigramBackcopy(Process):
    @cached_property
    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P: V x V bigram law, start: V law of s_1, trigger: V bool) over the symbols."""
        chars = self.symbols
        stoi = {c: i for i, c in enumerate(chars)}
        V = len(chars)
        counts = np.zeros((V, V))
        for name in names_list():
            ids = [stoi[c] for c in "." + name + "."]
            np.add.at(counts, (ids[:-1], ids[1:]), 1)
        unigram = counts.sum(1)
        order = sorted(range(V), key=lambda i: (-unigram[i], chars[i]))
        trigger = np.zeros(V, bool)
        trigger[order[: self.params["k"]]] = True
        P = counts / counts.sum(1, keepdims=True)
        start = np.where(trigger, 0.0, unigram)
        return P, start / start.sum(), trigger

    @property
    def triggers(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.tables[2])]

    def rows(self, index, T):
        P, start, trigger = self.tables
        cum, cum0 = _cumulative(P), _cumulative(start)
        u = _uniforms(index, T)
        out = np.empty((len(index), T + 1), dtype=np.int64)
        out[:, 0] = self.bos
        if T >= 1:
            out[:, 1] = _draw(np.broadcast_to(cum0, (len(index), len(start))), u[:, 0])
        for i in range(2, T + 1):
            prev = out[:, i - 1]
            drawn = _draw(cum[prev], u[:, i - 1])
            out[:, i] = np.where(trigger[prev], out[:, i - 2], drawn)
        return out

    def entropy_floor(self, T):
        P, start, trigger = self.tables
        h = np.where(trigger, 0.0, entropy(P))   # entropy of the next token given a current token b
        total = float(entropy(start))             # input position 0 (BOS) predicts s_1
        marginal, q = start, None                 # Pr(s_i = b); q[a, b] = Pr(s_{i-1} = a, s_i = b), i >= 2
        for i in range(1, T):
            total += float(marginal @ h)          # input position i predicts s_{i+1}
            plain = marginal * ~trigger           # s_i = b is no trigger: s_{i+1} ~ P(.|b)
            q = plain[:, None] * P + (np.zeros_like(P) if q is None else (q * trigger[None, :]).T)
            marginal = q.sum(0)                   # a trigger b copies a: pair (b, a) gets q[a, b]
        return total / T

    def roles(self, x):
        return torch.isin(x, torch.tensor(self.triggers, device=x.device)).to(torch.int8)


class BosZipf(Process):
    @cached_property
    def law(self) -> np.ndarray:
        r = np.arange(1, self.params["vocab"] + 1, dtype=float)
        p = r ** -float(self.params["alpha"])
        return p / p.sum()

    def rows(self, index, T):
        u = _uniforms(index, T)
        out = np.empty((len(index), T + 1), dtype=np.int64)
        out[:, 0] = self.bos
        out[:, 1:] = np.searchsorted(_cumulative(self.law), u, side="right")
        return out

    def entropy_floor(self, T):
        return float(entropy(self.law))


LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]


def _zipf_symbols(n: int) -> list[str]:
    """n distinct printable single characters: 0-9 a-z A-Z, then Latin Extended and beyond (rank order)."""
    base = [chr(c) for c in range(ord("0"), ord("9") + 1)] + LETTERS + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    return (base + [chr(0x100 + i) for i in range(max(0, n - len(base)))])[:n]


PROCESSES = {
    "bigram-backcopy": (BigramBackcopy, {"k": Param(int, 3, 1, 8, "number of trigger tokens (the k most frequent)")},
                        "Guo et al. 2024 (arXiv 2410.13835): [BOS], then character bigrams of the embedded names "
                        "corpus (27 symbols, a-z and '.'); after each of the k most frequent symbols (triggers) "
                        "the next token copies the token before the trigger"),
    "bos-zipf": (BosZipf, {"vocab": Param(int, 100, 2, 50000, "number of Zipf tokens"),
                           "alpha": Param(float, 1.0, 0.0, 10.0, "Zipf exponent: P(r) ~ r^-alpha")},
                 "Liu 2026 ('Sparse attention 5'): [BOS], then i.i.d. tokens with P(r) ~ r^-alpha, r = 1..vocab"),
}


def describe_sources() -> dict[str, str]:
    """`normlab list sources` lines: each process, its parameters with defaults and ranges."""
    out = {}
    for name, (_, params, about) in PROCESSES.items():
        keys = "&".join(f"{k}={p.default}" for k, p in params.items())
        ranges = "; ".join(f"{k} in [{p.lo:g}, {p.hi:g}]: {p.about}" for k, p in params.items())
        out[f"{PREFIX}{name}[?{keys}]"] = f"{about}. Parameters: {ranges}. Exact entropy floor in every summary"
    return out


def is_synthetic(source: str) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


def parse(source: str) -> Process:
    """The process named by `source`; a ConfigError (one line) for an unknown name, key or bad value."""
    body = source[len(PREFIX):]
    name, _, query = body.partition("?")
    if name not in PROCESSES:
        raise ConfigError(f"data.source={source}: unknown synthetic source {name!r}; choose one of: "
                          + ", ".join(f"{PREFIX}{n}" for n in PROCESSES))
    cls, params, about = PROCESSES[name]
    values = {k: p.default for k, p in params.items()}
    seen = set()
    for item in filter(None, query.split("&")):
        if "=" not in item:
            raise ConfigError(f"data.source={source}: parameter {item!r} needs a value (key=value); "
                              f"{name} takes: {', '.join(params)}")
        key, text = item.split("=", 1)
        if key not in params:
            raise ConfigError(f"data.source={source}: unknown parameter {key!r}; {name} takes: {', '.join(params)}")
        if key in seen:
            raise ConfigError(f"data.source={source}: parameter {key!r} given twice")
        seen.add(key)
        values[key] = params[key].parse(source, key, text)
    symbols = (["."] + LETTERS) if name == "bigram-backcopy" else _zipf_symbols(values["vocab"])
    return cls(name, values, about, symbols)


class SyntheticData:
    """One split of a synthetic process with the batch interface of TokenData (batch, batch_index, replay)."""

    def __init__(self, process: Process, split: str, block_size: int):
        self.process, self.split, self.block_size = process, split, block_size
        floor = process.entropy_floor(block_size)
        # one token stands for one "byte": bits per byte is bits per token here
        # no documents, token or byte counts: rows are generated per (split, seed, step), without end
        self.stats = {"byte_entropy_bits": 0.0, "synthetic": process.spec, "process": process.about, "eval_length": block_size,
                      "entropy_floor_nats": floor, "entropy_floor_bits": floor / math.log(2)}
        if isinstance(process, BigramBackcopy):
            self.stats["triggers"] = [process.symbols[i] for i in process.triggers]

    bytes_per_token = 1.0

    def batch_index(self, batch_size: int, seed: int, step: int) -> torch.Tensor:
        return _row_seeds(self.split, seed, step, batch_size)

    def batch(self, batch_size: int, seed: int, step: int) -> Batch:
        return self.replay(self.batch_index(batch_size, seed, step))

    def replay(self, index: torch.Tensor) -> Batch:
        rows = torch.from_numpy(self.process.rows(index, self.block_size))
        return Batch(rows[:, :-1].contiguous(), rows[:, 1:].contiguous(), index)

    def roles(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.process.roles(x)


def fingerprint(process: Process) -> str:
    text = json.dumps({"v": FORMAT_VERSION, "spec": process.spec}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _synthetic_settings(cfg) -> str | None:
    d = cfg.data
    for key, source in (("data.source", d.source), ("data.val_source", d.val_source)):
        if is_synthetic(source):
            try:
                parse(source)
            except ConfigError as err:
                return str(err)
    if is_synthetic(d.val_source):
        return f"data.val_source={d.val_source}: a synthetic source validates on its own draws; leave data.val_source empty"
    if is_synthetic(d.source):
        if d.tokenizer != "char":
            return f"data.source={d.source} generates token ids itself and needs data.tokenizer=char (got {d.tokenizer})"
        if d.task != "lm":
            return f"data.source={d.source} is a next-token stream and needs data.task=lm (got {d.task})"
    return None
