"""Evidence for claims: per-seed measurements in, a test, an effect size, a CI and a verdict word out.

Implements the table of shared/reference/evidence.md ("Evidence for claims: which test, which effect
size, which verdict"); every distribution and test comes from `scipy.stats`:

| claim shape (evidence.md)       | function              | test                            | effect size, CI        |
|---------------------------------|-----------------------|---------------------------------|------------------------|
| a < b, continuous, paired       | paired()              | ttest_rel; check: sign-flip     | mean(d), t CI; d_z     |
| metric with ties or std 0       | paired(discrete=True) | exact sign-flip permutation     | CI by inverting it     |
| a < b, unpaired                 | unpaired()            | Welch ttest_ind                 | Welch CI; Hedges' g    |
| a ≈ b within a stated margin    | equivalence()         | TOST (two one-sided tests)      | CI inside ±margin      |
| share of samples, a vs b        | proportions()         | fisher_exact one-sided          | Newcombe CI; Cohen's h |
| several claims, one experiment  | holm()                | Holm step-down adjustment       |                        |

verdict() turns evidence and a Holm-adjusted p into evidence.md's verdict words; n_needed() and
power_line() size a replication when the word is "not enough evidence".

Design choices:
- The check next to the paired t is the exact sign-flip permutation test of mean(d), not Wilcoxon: it
  tests the same statistic as the t-test (so a disagreement isolates the normality assumption), stays
  exact with zeros and ties (Wilcoxon drops zero differences and ranks ties), and is the same code as
  the discrete primary. At n pairs its p cannot go below 2**-n (1/8 at n = 3), and the notes say so.
- For discrete metrics (or sd(d) = 0) the CI inverts that same exact test: the set of shifts delta
  whose test is not rejected at 2.5 % per side. Its bounds are order statistics of the 2**n - 1 subset
  means of d, so the CI excludes 0 exactly when the test rejects, it is unbounded below n = 6, and it
  never claims more than the test does; a bootstrap at n = 3 would give a narrow interval the test
  cannot back. Above 16 pairs it falls back to a percentile bootstrap with a fixed seed.
"""
from __future__ import annotations

# scipy.stats is imported inside the functions that run a test: a sweep worker reads claim specs through this
# module (experiments/spec.py -> claims.py) and never tests, and scipy.stats is ~1 s of its start-up.

import inspect
import math
from dataclasses import asdict, dataclass, field

import numpy as np

VERDICTS = ("supported", "contradicted", "not enough evidence", "untestable here")
SUPPORTED, CONTRADICTED, NOT_ENOUGH, UNTESTABLE = VERDICTS
DIRECTIONS = ("less", "greater")
ALPHA = 0.05
LEVEL = 0.95
EXACT_MAX_N = 16          # sign-flip patterns are enumerated (2**n) up to here; Monte Carlo above
MC_RESAMPLES = 65_536     # Monte Carlo sign-flip / bootstrap draws above EXACT_MAX_N
MIN_N = 3                 # verdict(): fewer pairs than this is never more than "not enough evidence"
SEED = 0                  # fixed random stream for the Monte Carlo paths: reports are reproducible
REL_TOL = 1e-12           # sd(d) below REL_TOL * max|input| is float noise from a - b, i.e. zero


@dataclass
class Evidence:
    """One claim's test result, in the metric's units, with enough context to print and re-check it."""
    test: str
    n: int                        # pairs (paired); min of the two sides (unpaired, proportions)
    estimate: float               # mean(a - b) | mean(a) - mean(b) | p_a - p_b, in the metric's units
    ci95: tuple[float, float]
    p: float
    effect_size: dict
    check: dict | None = None
    units: str = ""
    notes: list[str] = field(default_factory=list)
    direction: str = ""           # "less" | "greater" | "equivalent": what `p` is the p-value of
    sd: float = float("nan")      # sd of differences (paired) or pooled sd (unpaired): sizes replications
    n_a: int | None = None        # runs / samples per side for unpaired tests and proportions
    n_b: int | None = None

    def as_dict(self) -> dict:
        """Plain JSON types; NaN and ±inf (an undefined or unbounded value) become None."""
        return _jsonable(asdict(self))


def _jsonable(x):
    """Recursively turn numpy scalars, tuples and non-finite floats into strict-JSON values."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


# ---------------------------------------------------------------- input checks and small helpers

def _values(x, name: str) -> np.ndarray:
    """1-D float array; NaN/inf raise, because how a diverged run counts is the caller's decision."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D sequence of per-seed values, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN/inf (a diverged run?): decide how it counts before testing")
    return arr


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Validated equal-length arrays: a[i] and b[i] must be the same seed."""
    a, b = _values(a, "a"), _values(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired test needs one b per a (same seeds): got {a.size} and {b.size} values")
    return a, b


def _direction(direction: str) -> str:
    """Reject anything but the two one-sided alternatives scipy understands."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'less' (claim a < b) or 'greater' (a > b), got {direction!r}")
    return direction


def _no_spread(d: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """sd(d) == 0 up to the cancellation error of a - b: the t statistic would be 0/0 or noise."""
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
    return float(np.std(d, ddof=1)) <= REL_TOL * scale


def _rng_kw() -> dict:
    """A fixed generator under the keyword this SciPy takes (`rng` from 1.15, `random_state` before)."""
    from scipy import stats

    key = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(SEED)}


def _t_ci(estimate: float, se: float, df: float) -> tuple[float, float]:
    """Two-sided 95 % t interval estimate ± t_{0.975, df} · se; NaN when se is 0 or undefined."""
    from scipy import stats

    if not (se > 0 and math.isfinite(se) and df > 0):
        return float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * se
    return estimate - half, estimate + half


def _p_floor(p: float, notes: list[str]) -> float:
    """Never report p = 0: an underflowed p becomes the smallest positive float, with a note."""
    if p == 0.0:
        notes.append("p underflowed to 0 in floating point; reported as the smallest positive float")
        return float(np.finfo(float).tiny)
    return float(p)


def _untested(test: str, n: int, estimate: float, direction: str, units: str, why: str, **kw) -> Evidence:
    """Evidence with no p and no CI (too few runs): verdict() turns it into 'not enough evidence'."""
    return Evidence(test=test, n=n, estimate=float(estimate), ci95=(float("nan"), float("nan")),
                    p=float("nan"), effect_size=kw.pop("effect_size", {"name": "d_z", "value": float("nan")}),
                    units=units, notes=[why], direction=direction, **kw)


# ---------------------------------------------------------------- the exact sign-flip test

def _mean_stat(x, axis=-1):
    """Vectorised statistic for scipy.stats.permutation_test: the mean difference."""
    return np.mean(x, axis=axis)


def signflip_name(n: int) -> str:
    """Name of the sign-flip test as run at n pairs (exact enumeration or Monte Carlo)."""
    return "exact sign-flip permutation" if n <= EXACT_MAX_N else f"sign-flip permutation ({MC_RESAMPLES} draws)"


def signflip_p(d, direction: str) -> float:
    """One-sided p of mean(d) under independent sign flips (scipy permutation_test): exact to n = 16."""
    from scipy import stats

    d = _values(d, "d")
    exact = d.size <= EXACT_MAX_N
    res = stats.permutation_test((d,), _mean_stat, permutation_type="samples", vectorized=True,
                                 n_resamples=np.inf if exact else MC_RESAMPLES,
                                 alternative=_direction(direction), **({} if exact else _rng_kw()))
    return float(res.pvalue)


def signflip_ci(d, level: float = LEVEL) -> tuple[float, float]:
    """CI of the shift by inverting the exact sign-flip test: order statistics of the 2**n - 1 subset means.

    The one-sided p of shift delta steps exactly at the subset means of d, so with j = floor((1 - level)
    * 2**(n-1)) the bounds are the j-th smallest and j-th largest subset means; j = 0 (n < 6 at 95 %)
    means no shift can be rejected and the interval is (-inf, inf)."""
    d = _values(d, "d")
    n = d.size
    if n > EXACT_MAX_N:
        raise ValueError(f"exact inversion enumerates 2**n subsets; use the bootstrap above n = {EXACT_MAX_N}")
    j = math.floor((1 - level) * 2 ** (n - 1) + 1e-9)
    if j == 0:
        return -math.inf, math.inf
    masks = (np.arange(1, 2 ** n)[:, None] >> np.arange(n)) & 1
    means = np.sort(masks @ d / masks.sum(axis=1))
    return float(means[j - 1]), float(means[means.size - j])


def _shift_ci(d: np.ndarray) -> tuple[tuple[float, float], str]:
    """CI of mean(d) with no normality assumption: exact inversion to 16 pairs, percentile bootstrap above."""
    from scipy import stats

    if d.size <= EXACT_MAX_N:
        return signflip_ci(d), "CI: exact inversion of the sign-flip test (subset means of d)"
    res = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=MC_RESAMPLES, **_rng_kw())
    ci = res.confidence_interval
    return (float(ci.low), float(ci.high)), f"CI: percentile bootstrap ({MC_RESAMPLES} draws, seed {SEED})"


def _small_n_note(n: int) -> list[str]:
    """The sign-flip floor: at n pairs no exact permutation p is below 2**-n."""
    if 2.0 ** -n >= ALPHA:
        return [f"with {n} pairs the exact sign-flip p cannot be below 2^-{n} = {2.0 ** -n:.3g}"]
    return []


# ---------------------------------------------------------------- paired, unpaired, equivalence

def paired(a, b, direction, *, discrete=False, units="") -> Evidence:
    """a vs b on the same seeds: test per-seed differences d = a - b (pairing removes shared seed noise)."""
    a, b = _pairs(a, b)
    return _paired(a, b, _direction(direction), discrete, units)


def _paired(a: np.ndarray, b: np.ndarray, direction: str, discrete: bool, units: str) -> Evidence:
    """Dispatch: too few pairs, exact sign-flip (discrete or sd 0), or paired t with a sign-flip check."""
    d = a - b
    if d.size < 2:
        return _untested("paired", d.size, d.mean(), direction, units, "fewer than 2 pairs: no test")
    zero = _no_spread(d, a, b)
    if discrete or zero:
        return _paired_exact(d, direction, zero, units)
    return _paired_t(a, b, d, direction, units)


def _paired_t(a, b, d, direction, units) -> Evidence:
    """Primary ttest_rel one-sided, t CI of mean(d), d_z = mean/sd; the exact sign-flip p as a check."""
    from scipy import stats

    n, mean, sd = d.size, float(d.mean()), float(d.std(ddof=1))
    notes: list[str] = []
    p = _p_floor(stats.ttest_rel(a, b, alternative=direction).pvalue, notes)
    check = {"test": signflip_name(n), "p": signflip_p(d, direction)}
    return Evidence(test=f"paired t (one-sided, {direction})", n=n, estimate=mean,
                    ci95=_t_ci(mean, sd / math.sqrt(n), n - 1), p=p,
                    effect_size={"name": "d_z", "value": mean / sd}, check=check, units=units,
                    notes=notes + _small_n_note(n), direction=direction, sd=sd)


def _paired_exact(d, direction, zero, units) -> Evidence:
    """Ties are structural (counts, shares of 8 heads) or sd(d) = 0: the exact sign-flip test, never a t."""
    n, mean, sd = d.size, float(d.mean()), 0.0 if zero else float(d.std(ddof=1))
    if zero:
        notes = ["sd of differences is 0 (discrete metric): exact permutation test used; 0 spread over "
                 f"{n} seeds means 'discrete', not 'certain'"]
    else:
        notes = ["discrete metric (ties are structural): exact sign-flip permutation test, not a t-test"]
    (lo, hi), how = _shift_ci(d)
    notes.append(how)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        notes.append(f"CI unbounded: with {n} pairs no shift is rejected at 2.5 % per side (needs n >= 6)")
    elif np.isclose(lo, hi, rtol=1e-9, atol=0.0):
        notes.append("CI has zero width because all differences are equal; that is not certainty")
    return Evidence(test=signflip_name(n), n=n, estimate=mean, ci95=(lo, hi), p=signflip_p(d, direction),
                    effect_size={"name": "d_z", "value": mean / sd if sd > 0 else float("nan")},
                    units=units, notes=notes + _small_n_note(n), direction=direction, sd=sd)


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Standard error of mean(a) - mean(b) and its Welch–Satterthwaite degrees of freedom."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    den = va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)
    return se, (va + vb) ** 2 / den if den > 0 else float("nan")


def hedges_g(a, b) -> tuple[float, float]:
    """Hedges' g (Cohen's d on the pooled sd times J = 1 - 3/(4 df - 1), df = n_a + n_b - 2), pooled sd."""
    a, b = _values(a, "a"), _values(b, "b")
    df = a.size + b.size - 2
    sp = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / df)
    j = 1 - 3 / (4 * df - 1)
    return (j * (a.mean() - b.mean()) / sp if sp > 0 else float("nan")), sp


def unpaired(a, b, direction, *, units="") -> Evidence:
    """Different seeds or shapes: Welch's t (no equal-variance assumption) with a Welch CI and Hedges' g."""
    from scipy import stats

    a, b = _values(a, "a"), _values(b, "b")
    direction, diff = _direction(direction), float(a.mean() - b.mean())
    sizes = {"n_a": a.size, "n_b": b.size}
    if min(a.size, b.size) < 2:
        return _untested("Welch t", min(a.size, b.size), diff, direction, units,
                         "fewer than 2 runs on a side: no test",
                         effect_size={"name": "hedges_g", "value": float("nan")}, **sizes)
    se, df = _welch(a, b)
    g, sp = hedges_g(a, b)
    notes: list[str] = []
    if se > 0:
        p = _p_floor(float(stats.ttest_ind(a, b, equal_var=False, alternative=direction).pvalue), notes)
    else:
        p = float("nan")
        notes.append("both sides have sd 0: Welch's t is undefined (a discrete metric needs an exact test)")
    return Evidence(test=f"Welch t (one-sided, {direction})", n=min(a.size, b.size), estimate=diff,
                    ci95=_t_ci(diff, se, df), p=p,
                    effect_size={"name": "hedges_g", "value": g}, units=units, notes=notes,
                    direction=direction, sd=sp, **sizes)


def equivalence(a, b, margin, *, paired=True, discrete=False, units="") -> Evidence:
    """a ≈ b within ±margin (stated before the run): TOST, two one-sided tests; p is the larger of the two."""
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"equivalence margin must be a positive number, got {margin!r}")
    if paired:
        a, b = _pairs(a, b)
        run = lambda x, alt: _paired(x, b, alt, discrete, units)  # noqa: E731
    else:
        a, b = _values(a, "a"), _values(b, "b")
        run = lambda x, alt: unpaired(x, b, alt, units=units)  # noqa: E731
    base, low, high = run(a, "greater"), run(a + margin, "greater"), run(a - margin, "less")
    p = max(low.p, high.p) if not (math.isnan(low.p) or math.isnan(high.p)) else float("nan")
    check = None
    if low.check and high.check:
        check = {"test": low.check["test"] + " (TOST)", "p": max(low.check["p"], high.check["p"])}
    notes = base.notes + [f"TOST against ±{margin:g}: p(Δ > -{margin:g}) = {low.p:.3g}, p(Δ < +{margin:g}) = "
                          f"{high.p:.3g}; the verdict asks the 95 % CI (stricter than TOST's 90 %) inside ±margin"]
    return Evidence(test=f"TOST {base.test.split(' (')[0]}", n=base.n, estimate=base.estimate,
                    ci95=base.ci95, p=p, effect_size=base.effect_size, check=check, units=units,
                    notes=notes, direction="equivalent", sd=base.sd, n_a=base.n_a, n_b=base.n_b)


# ---------------------------------------------------------------- proportions

def _counts(k: int, n: int, name: str) -> tuple[int, int]:
    """k successes of n trials, both integers with 0 <= k <= n and n >= 1."""
    if int(k) != k or int(n) != n or not 0 <= k <= n or n < 1:
        raise ValueError(f"{name}: need integers 0 <= k <= n, n >= 1; got k={k!r}, n={n!r}")
    return int(k), int(n)


def newcombe_ci(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """95 % CI of p_a - p_b by Newcombe's hybrid score method (1998, method 10) from two Wilson intervals."""
    from scipy import stats

    pa, pb = k_a / n_a, k_b / n_b
    wa = stats.binomtest(k_a, n_a).proportion_ci(confidence_level=LEVEL, method="wilson")
    wb = stats.binomtest(k_b, n_b).proportion_ci(confidence_level=LEVEL, method="wilson")
    lower = (pa - pb) - math.hypot(pa - wa.low, wb.high - pb)
    upper = (pa - pb) + math.hypot(wa.high - pa, pb - wb.low)
    return float(lower), float(upper)


def cohen_h(p_a: float, p_b: float) -> float:
    """Cohen's h = 2 asin(sqrt(p_a)) - 2 asin(sqrt(p_b)): a proportion gap on a variance-stabilised scale."""
    return 2 * math.asin(math.sqrt(p_a)) - 2 * math.asin(math.sqrt(p_b))


def proportions(k_a, n_a, k_b, n_b, direction) -> Evidence:
    """Share of samples a vs b (e.g. degenerate): one-sided Fisher exact on the 2x2, Newcombe CI, Cohen's h."""
    from scipy import stats

    (k_a, n_a), (k_b, n_b) = _counts(k_a, n_a, "a"), _counts(k_b, n_b, "b")
    direction = _direction(direction)
    table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
    p = float(stats.fisher_exact(table, alternative=direction).pvalue)
    pa, pb = k_a / n_a, k_b / n_b
    return Evidence(test=f"Fisher exact (one-sided, {direction})", n=min(n_a, n_b), estimate=pa - pb,
                    ci95=newcombe_ci(k_a, n_a, k_b, n_b), p=p,
                    effect_size={"name": "cohen_h", "value": cohen_h(pa, pb)},
                    notes=["CI: Newcombe hybrid score (Wilson) interval of p_a - p_b"],
                    direction=direction, n_a=n_a, n_b=n_b)


# ---------------------------------------------------------------- several claims, verdicts, sizes

def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm step-down adjusted p over one experiment's claims (family-wise error, any dependence).

    None and NaN are not claims: they stay as they are and do not count towards m."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    if any(not 0.0 <= pvalues[i] <= 1.0 for i in idx):
        raise ValueError(f"p-values must lie in [0, 1]: {pvalues}")
    out = list(pvalues)
    running, m = 0.0, len(idx)
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def verdict(ev: Evidence | None, direction, p_adjusted, *, min_n=MIN_N, margin=None) -> str:
    """evidence.md's verdict word: 'supported' needs the CI past 0 on the claimed side and Holm p < 0.05;
    'contradicted' needs only the CI past 0 on the other side; anything else is 'not enough evidence'."""
    if direction not in DIRECTIONS + ("equivalent",) or (direction == "equivalent") != (margin is not None):
        raise ValueError(f"direction {direction!r} with margin {margin!r}: use 'less'/'greater' without a "
                         "margin, or 'equivalent' with one")
    if ev is None or ev.n < min_n:
        return NOT_ENOUGH
    if ev.direction and ev.direction != direction:
        raise ValueError(f"evidence was computed for {ev.direction!r}, verdict asked for {direction!r}")
    lo, hi = ev.ci95
    significant = p_adjusted is not None and p_adjusted < ALPHA
    if margin is not None:
        if -margin < lo and hi < margin and significant:
            return SUPPORTED
        return CONTRADICTED if lo > margin or hi < -margin else NOT_ENOUGH
    claimed, other = (hi < 0, lo > 0) if direction == "less" else (lo > 0, hi < 0)
    if claimed and significant:
        return SUPPORTED
    return CONTRADICTED if other else NOT_ENOUGH


def _t_power(n: int, z_effect: float, alpha_side: float, one_sided: bool) -> float:
    """Power of the paired t at n pairs for a standardised effect |effect|/sd (noncentral t, scipy.stats.nct)."""
    from scipy import stats

    df, ncp = n - 1, z_effect * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha_side, df)
    power = stats.nct.sf(crit, df, ncp)
    return float(power if one_sided else power + stats.nct.cdf(-crit, df, ncp))


def n_needed(sd_d, effect, *, alpha=0.05, power=0.8, one_sided=True, max_n=10_000) -> int | None:
    """Pairs the paired t needs to detect `effect` at `power`, given the observed sd of differences.

    Start at the normal approximation ((z_{1-a} + z_power) sd / effect)^2, then step to the smallest n
    whose noncentral-t power reaches `power`. sd 0: the exact sign-flip floor (smallest n, 2^-n <= a).
    None when effect is 0/NaN, sd is NaN/inf, or more than max_n pairs would be needed."""
    from scipy import stats

    if effect is None or sd_d is None or not (math.isfinite(effect) and math.isfinite(sd_d)) or effect == 0:
        return None
    if sd_d < 0:
        raise ValueError(f"sd of differences must be >= 0, got {sd_d}")
    alpha_side = alpha if one_sided else alpha / 2
    if sd_d == 0:
        n = math.ceil(math.log2(1 / alpha_side) - 1e-9)
        return n if n <= max_n else None
    z_effect = abs(effect) / sd_d
    n0 = ((stats.norm.ppf(1 - alpha_side) + stats.norm.ppf(power)) / z_effect) ** 2
    if n0 > max_n:
        return None
    n = max(2, math.floor(n0))
    while n > 2 and _t_power(n - 1, z_effect, alpha_side, one_sided) >= power:
        n -= 1
    while _t_power(n, z_effect, alpha_side, one_sided) < power:
        n += 1
        if n > max_n:
            return None
    return n


def power_line(ev: Evidence, seed_effect) -> str:
    """One report sentence: how many seeds the observed spread needs to detect the source's own effect.

    Sized for the verdict 'supported': its two-sided 95 % CI must exclude 0 (so two-sided 5 %), and it
    needs at least MIN_N seeds; unpaired evidence is sized per variant, with sd * sqrt(2) as the sd of a
    difference."""
    if seed_effect is None or not math.isfinite(seed_effect) or seed_effect == 0:
        return f"the source states no effect size to size a replication against (have {ev.n})"
    if not math.isfinite(ev.sd):
        return f"no sd of differences to size a replication from (have {ev.n})"
    unpaired_ = ev.n_a is not None
    need = n_needed(ev.sd * (math.sqrt(2) if unpaired_ else 1.0), seed_effect, one_sided=False)
    need = None if need is None else max(need, MIN_N)
    who = "runs per variant" if unpaired_ else "seeds"
    u = f" {ev.units}" if ev.units else ""
    if ev.sd == 0:
        return (f"the differences have no spread (discrete metric): the exact sign-flip test needs at least "
                f"{need} {who} for a 95 % CI that can exclude 0 (have {ev.n})")
    what = "pooled sd" if unpaired_ else "sd of differences"
    size = f"about {need}" if need is not None else "more than 10000"
    line = (f"at the observed {what} {ev.sd:.3g}{u}, detecting the source's effect of {abs(seed_effect):.3g}{u} "
            f"with 80 % power needs {size} {who} (have {ev.n})")
    return line + far_below(ev.estimate, seed_effect, u)


FAR_BELOW = 5.0   # an observed effect this many times smaller than the source's (or of the other sign) is said so


def far_below(estimate: float, seed_effect: float, units: str = "") -> str:
    """'; the observed effect (0.006 nats/token) is 40x smaller than the source's': more seeds would size a test
    for the source's effect, not for the one these runs show; '' when the two are comparable."""
    if not (math.isfinite(estimate) and math.isfinite(seed_effect)) or seed_effect == 0:
        return ""
    if estimate * seed_effect <= 0:
        return (f"; but the observed effect ({estimate:.3g}{units}) has the opposite sign (or none) to the source's "
                f"({seed_effect:.3g}{units})")
    ratio = abs(seed_effect) / abs(estimate)
    return (f"; but the observed effect ({estimate:.3g}{units}) is {ratio:.0f}x smaller than the source's "
            f"({seed_effect:.3g}{units})" if ratio >= FAR_BELOW else "")
