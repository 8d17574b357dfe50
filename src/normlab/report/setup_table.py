"""'Setup vs the source': what these runs did, beside what the source (seed README, paper) did.

Every report opens with it, so a reader sees at once where our setting departs from the source's:
the data (source, documents, tokens), the model (parameters), steps, tokens seen per run, seeds,
preset and CLI overrides. Ours is read from the run directories; the source's from the
experiment's `seed_setup`.
"""
from __future__ import annotations

from .markdown import cell
from .runs import RunData

ROWS = [("data", "Data"), ("documents", "Training documents"), ("tokens", "Training tokens"),
        ("tokenizer", "Tokenizer"), ("model", "Model"), ("params", "Parameters"), ("steps", "Steps"),
        ("batch", "Batch"), ("tokens_seen", "Tokens seen per run"), ("optimizer", "Optimizer"),
        ("seeds", "Seeds"), ("preset", "Preset"), ("overrides", "CLI overrides")]


def _first_config(runs: list[RunData]) -> dict:
    return next((r.config for r in runs if r.config), {})


def _span(values) -> str:
    vals = sorted({v for v in values if v is not None})
    if not vals:
        return "n/a"
    if isinstance(vals[0], (int, float)):
        lo, hi = vals[0], vals[-1]
        return f"{lo:,}" if lo == hi else f"{lo:,} – {hi:,}"
    return ", ".join(map(str, vals))


def ours(info: dict, runs: list[RunData]) -> dict[str, str]:
    cfg = _first_config(runs)
    m, d, t = cfg.get("model", {}), cfg.get("data", {}), cfg.get("train", {})
    stats = next((r.summary.get("data", {}).get("train", {}) for r in runs if r.summary.get("data")), {})
    tok = d.get("tokenizer", "?")
    out = {
        "data": (f"{d.get('source', '?')} (generated rows [BOS] + T tokens; exact entropy floor "
                 f"{stats['entropy_floor_nats']:.4f} nats/token at T = {stats.get('eval_length')})"
                 if "entropy_floor_nats" in stats else
                 f"{d.get('source', '?')} ({d.get('batching', '?')} batching"
                 + (f", task {d.get('task')}" if d.get("task", "lm") != "lm" else "") + ")"),
        "documents": f"{stats['n_docs']:,}" if stats.get("n_docs") is not None else "n/a",
        "tokens": f"{stats['n_tokens']:,}" if stats.get("n_tokens") is not None else "n/a",
        "tokenizer": tok + (f" (vocab {m.get('vocab_size')})" if m.get("vocab_size") else ""),
        "model": f"{m.get('arch', 'gpt')}, {m.get('n_layer')} layers, d_model {m.get('d_model')}, "
                 f"{m.get('n_head')} heads, context {m.get('block_size')}",
        "params": _span(r.summary.get("params") for r in runs),
        "steps": _span((r.config.get("train") or {}).get("steps") for r in runs if r.config),
        "batch": f"{t.get('batch_size')} sequences",
        "tokens_seen": _span(r.summary.get("tokens_seen") for r in runs),
        "optimizer": f"{t.get('optimizer')} lr {t.get('lr')}, {t.get('schedule')}, warmup {t.get('warmup_steps')}",
        "seeds": ", ".join(map(str, info.get("seeds", []))) or "n/a",
        "preset": info.get("preset") or "none",
        "overrides": " ".join(info.get("overrides") or []) or "none",
    }
    return out


def modified_title(info: dict) -> str:
    """'' for the experiment as shipped; else 'modified: <preset>, <overrides>' (the title's suffix)."""
    parts = ([f"preset {info['preset']}"] if info.get("preset") else []) + list(info.get("overrides") or [])
    return "modified: " + ", ".join(parts) if parts else ""


def markdown(info: dict, runs: list[RunData], seed_setup: dict) -> tuple[str, dict]:

    mine = ours(info, runs)
    lines = ["| | these runs | the source |", "|---|---|---|"]
    for key, label in ROWS:
        theirs = seed_setup.get(key, "")
        lines.append(f"| {cell(label)} | {cell(mine[key])} | {cell(theirs) if theirs not in ('', None) else '—'} |")
    return "\n".join(lines), {"ours": mine, "source": dict(seed_setup)}
