"""Seed 003 (`prepost`): its table and its claims, with the numbers from the seed's README."""
from __future__ import annotations

import numpy as np

from .analysis import Analysis, Row, common_rows, nanmax, nanmean, nanmin, register_analysis, window
from .runs import RunData, stack_losses
from .stats import Claim, Stat, compare_lower, stat


@register_analysis("prepost")
def prepost(info: dict, groups: dict[str, list[RunData]]) -> Analysis:
    """Seed 003's table and claims (numbers from its README)."""
    g = groups
    first50 = {v: window(nanmean, rs, slice(0, 50)) for v, rs in g.items()}
    last100 = {v: window(nanmean, rs, slice(-100, None)) for v, rs in g.items()}
    max20 = {v: window(nanmax, rs, slice(0, 20)) for v, rs in g.items()}
    minimum = {v: window(nanmin, rs, slice(None)) for v, rs in g.items()}
    rows = [Row("Parameters", {v: stat(r.summary.get("params") for r in rs) for v, rs in g.items()}, 0),
            Row("Avg loss (first 50 steps)", first50), Row("Avg loss (last 100 steps)", last100),
            Row("Max loss (first 20 steps)", max20), Row("Min loss seen", minimum)] + common_rows(g)[1:]
    claims = []
    if {"pre", "post", "none"} <= set(g):
        claims = _prepost_claims(g, first50, last100, max20)
    return Analysis(rows, claims)


def _both(v1: str, v2: str) -> str:
    if v1 == v2:
        return v1
    if "not reproduced" in (v1, v2):
        return "not reproduced"
    return "inconclusive"


def _lowest(stats: dict[str, Stat], winner: str, others: list[str]) -> str:
    verdict = "reproduced"
    for o in others:
        verdict = _both(verdict, compare_lower(stats[winner], stats[o]))
    return verdict


def _prepost_claims(g, first50, last100, max20) -> list[Claim]:
    fmt = lambda d: ", ".join(f"{v} {d[v].fmt()}" for v in ("pre", "post", "none"))  # noqa: E731
    claims = [
        Claim("Pre-Norm has the lowest average loss over the first 50 steps",
              "pre 2.95, post 2.99, none 3.11", fmt(first50), _lowest(first50, "pre", ["post", "none"])),
        Claim("Pre-Norm ends below Post-Norm (avg loss, last 100 steps)",
              "pre 2.36, post 2.62", fmt(last100), _lowest(last100, "pre", ["post"])),
        Claim("Pre-Norm maintains the lowest loss at the end (the seed's text; its own table has No-Norm "
              "lower, 2.32 vs 2.36)", "pre 2.36, none 2.32", fmt(last100), _lowest(last100, "pre", ["none"])),
        Claim("No-Norm is the most unstable early: highest max loss over the first 20 steps",
              "none 4.85, post 3.64, pre 3.58", fmt(max20),
              _both(_lowest({"a": max20["pre"], "b": max20["none"]}, "a", ["b"]),
                    _lowest({"a": max20["post"], "b": max20["none"]}, "a", ["b"]))),
    ]
    claims.append(_cumulative_claim(g))
    claims.append(_collapse_claim(g))
    return claims


def _cumulative_claim(g) -> Claim:
    from .plots import cumulative_mean

    cum = {v: np.nanmean(cumulative_mean(stack_losses(rs)), axis=0) for v, rs in g.items()}
    n = min(len(c) for c in cum.values())
    lead = np.mean([cum["pre"][t] <= min(cum["post"][t], cum["none"][t]) for t in range(10, n)])
    verdict = "reproduced" if lead >= 0.95 else ("not reproduced" if lead < 0.5 else "inconclusive")
    return Claim("Pre-Norm leads the cumulative average loss from start to finish", "(figure only)",
                 f"pre lowest at {lead:.0%} of steps 10..{n - 1} (mean over seeds)", verdict)


def _collapse_claim(g) -> Claim:
    def degenerate(rs):
        samples = [s for r in rs for s in r.samples]
        return sum(len(s) <= 1 for s in samples), len(samples)

    post, pre = degenerate(g["post"]), degenerate(g["pre"])
    frac_post = post[0] / max(post[1], 1)
    frac_pre = pre[0] / max(pre[1], 1)
    verdict = "reproduced" if frac_post >= 0.4 and frac_post > frac_pre else "not reproduced"
    return Claim("Post-Norm collapses: degenerate single-character samples", "post 3 of 5 samples are 'a'",
                 f"post {post[0]}/{post[1]} samples of <= 1 char, pre {pre[0]}/{pre[1]}", verdict)
