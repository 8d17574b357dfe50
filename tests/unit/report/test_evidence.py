"""report.evidence: every number is checked against scipy, a hand computation or a published example."""
import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from normlab.report import evidence as E
from normlab.report.evidence import Evidence

A = np.array([2.31, 2.28, 2.35, 2.30, 2.26])      # e.g. Pre-LN final loss, seeds 0..4
B = np.array([2.40, 2.33, 2.44, 2.36, 2.37])      # Post-LN, same seeds


def hand_signflip_p(d, direction):
    """Enumerate all 2**n sign patterns by hand; p = share with a mean at least as extreme."""
    d = np.asarray(d, float)
    obs = d.mean()
    means = [np.mean(np.array(s) * d) for s in itertools.product((1, -1), repeat=d.size)]
    tol = 1e-12
    hits = [m <= obs + tol if direction == "less" else m >= obs - tol for m in means]
    return sum(hits) / len(means)


def ev(ci, n=5, p=0.01, direction="less"):
    """A hand-made Evidence for verdict tests."""
    return Evidence(test="t", n=n, estimate=sum(ci) / 2, ci95=ci, p=p,
                    effect_size={"name": "d_z", "value": 1.0}, direction=direction)


# ---------------------------------------------------------------- paired t

def test_paired_t_matches_scipy_and_hand_ci():
    e = E.paired(A, B, "less", units="nats")
    d = A - B
    n, mean, sd = d.size, d.mean(), d.std(ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert e.test == "paired t (one-sided, less)" and e.n == 5 and e.units == "nats"
    assert e.estimate == pytest.approx(mean)
    assert e.ci95 == pytest.approx((mean - half, mean + half))
    assert e.p == pytest.approx(stats.ttest_rel(A, B, alternative="less").pvalue)
    assert e.effect_size == {"name": "d_z", "value": pytest.approx(mean / sd)}
    assert e.sd == pytest.approx(sd)


def test_paired_greater_is_the_mirror():
    less, greater = E.paired(A, B, "less"), E.paired(A, B, "greater")
    assert greater.p == pytest.approx(stats.ttest_rel(A, B, alternative="greater").pvalue)
    assert greater.p == pytest.approx(1 - less.p)
    assert greater.ci95 == pytest.approx(less.ci95)


def test_paired_check_is_the_exact_signflip_test():
    e = E.paired(A, B, "less")
    assert e.check["test"] == "exact sign-flip permutation"
    assert e.check["p"] == pytest.approx(hand_signflip_p(A - B, "less"))
    assert e.check["p"] == pytest.approx(1 / 32)       # every difference negative: 1 pattern of 32


def test_small_n_notes_the_permutation_floor():
    e = E.paired(A[:3], B[:3], "less")
    assert any("cannot be below 2^-3 = 0.125" in note for note in e.notes)
    assert not any("cannot be below" in note for note in E.paired(A, B, "less").notes)


# ---------------------------------------------------------------- exact sign-flip

@pytest.mark.parametrize("d,direction,want", [([1, 1, 1], "greater", 1 / 8), ([1, 1, 1], "less", 1.0),
                                              ([0.5, -0.1, 0.3, 0.2], "greater", 2 / 16),
                                              ([0.5, -0.1, 0.3, 0.2], "less", 15 / 16)])
def test_signflip_p_against_hand_enumeration(d, direction, want):
    assert hand_signflip_p(d, direction) == pytest.approx(want)
    assert E.signflip_p(d, direction) == pytest.approx(want)


def test_signflip_p_random_cases_against_hand_enumeration():
    rng = np.random.default_rng(1)
    for n in (2, 5, 8):
        d = rng.normal(0.1, 1.0, n).round(2)
        for direction in ("less", "greater"):
            assert E.signflip_p(d, direction) == pytest.approx(hand_signflip_p(d, direction))


def test_sd_zero_uses_the_permutation_test_and_says_so():
    e = E.paired([3.0, 4.0, 5.0], [2.0, 3.0, 4.0], "greater")
    assert e.test == "exact sign-flip permutation" and e.check is None
    assert e.p == pytest.approx(1 / 8) and e.p > 0
    assert e.sd == 0 and math.isnan(e.effect_size["value"])
    assert any("sd of differences is 0" in note for note in e.notes)
    assert e.ci95 == (-math.inf, math.inf)                      # 3 pairs can reject no shift
    assert any("CI unbounded" in note for note in e.notes)
    assert E.verdict(e, "greater", e.p) == "not enough evidence"


def test_sd_zero_up_to_float_noise_of_a_minus_b():
    a = np.array([2.3, 2.7, 2.1, 2.9])
    e = E.paired(a, a - 0.1, "greater")                         # d = 0.1 ± 1e-16
    assert e.test == "exact sign-flip permutation"
    assert e.p == pytest.approx(1 / 16)


def test_zero_width_ci_is_noted_not_certain():
    e = E.paired(np.arange(6.0) + 1, np.arange(6.0), "greater")
    assert e.ci95 == pytest.approx((1.0, 1.0))
    assert e.p == pytest.approx(1 / 64)
    assert any("zero width" in note and "not certainty" in note for note in e.notes)


def test_discrete_flag_forces_the_exact_test():
    a, b = np.array([3, 5, 4, 6, 2]) / 8, np.array([2, 3, 4, 3, 1]) / 8   # shares of 8 heads
    e = E.paired(a, b, "greater", discrete=True)
    assert e.test == "exact sign-flip permutation"
    assert e.p == pytest.approx(hand_signflip_p(a - b, "greater"))
    assert any("discrete metric" in note for note in e.notes)
    assert e.effect_size["value"] == pytest.approx((a - b).mean() / (a - b).std(ddof=1))


@pytest.mark.parametrize("n", [6, 7, 9])
def test_signflip_ci_inverts_the_test(n):
    d = np.random.default_rng(n).normal(0.3, 1.0, n)
    lo, hi = E.signflip_ci(d)
    eps = 1e-7
    assert E.signflip_p(d - (lo - eps), "greater") <= 0.025 < E.signflip_p(d - (lo + eps), "greater")
    assert E.signflip_p(d - (hi + eps), "less") <= 0.025 < E.signflip_p(d - (hi - eps), "less")


def test_signflip_ci_is_unbounded_below_six_pairs():
    assert E.signflip_ci([0.2, 0.4, 0.1, 0.3, 0.5]) == (-math.inf, math.inf)


def test_many_pairs_use_monte_carlo_and_bootstrap_reproducibly():
    d = np.random.default_rng(0).integers(-1, 3, 20).astype(float)
    e1 = E.paired(d, np.zeros(20), "greater", discrete=True)
    e2 = E.paired(d, np.zeros(20), "greater", discrete=True)
    assert e1.test.startswith("sign-flip permutation (") and e1.p == e2.p and e1.ci95 == e2.ci95
    assert e1.ci95[0] < d.mean() < e1.ci95[1]


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("bad", [[2.0, float("nan"), 2.1], [2.0, float("inf"), 2.1]])
def test_nan_or_inf_raises(bad):
    with pytest.raises(ValueError, match="diverged"):
        E.paired(bad, [2.0, 2.0, 2.0], "less")
    with pytest.raises(ValueError):
        E.unpaired([2.0, 2.1, 2.2], bad, "less")
    with pytest.raises(ValueError):
        E.equivalence(bad, [2.0, 2.0, 2.0], 0.1)


def test_bad_shapes_and_directions_raise():
    with pytest.raises(ValueError, match="same seeds"):
        E.paired([1.0, 2.0, 3.0], [1.0, 2.0], "less")
    with pytest.raises(ValueError, match="direction"):
        E.paired(A, B, "two-sided")
    with pytest.raises(ValueError):
        E.paired([], [], "less")
    with pytest.raises(ValueError, match="margin"):
        E.equivalence(A, B, 0.0)


def test_one_pair_is_no_test():
    e = E.paired([2.0], [2.5], "less")
    assert e.n == 1 and math.isnan(e.p) and e.estimate == pytest.approx(-0.5)
    assert E.verdict(e, "less", e.p, min_n=1) == "not enough evidence"


# ---------------------------------------------------------------- unpaired

def test_unpaired_matches_welch_and_hand_ci():
    a, b = A, np.array([2.40, 2.33, 2.44, 2.36, 2.37, 2.52, 2.29])
    e = E.unpaired(a, b, "less")
    assert e.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert e.ci95 == pytest.approx((diff - half, diff + half))
    assert (e.n, e.n_a, e.n_b) == (5, 5, 7)


def test_hedges_g_against_hand_formula():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])
    sp = math.sqrt((3 * np.var(a, ddof=1) + 2 * np.var(b, ddof=1)) / 5)   # pooled sd, df = 5
    g = (1 - 3 / (4 * 5 - 1)) * (a.mean() - b.mean()) / sp
    e = E.unpaired(a, b, "less")
    assert e.effect_size == {"name": "hedges_g", "value": pytest.approx(g)}
    assert g == pytest.approx(0.8421052631578947 * (2.5 - 4.0) / math.sqrt((3 * 5 / 3 + 2 * 4) / 5))


def test_unpaired_with_no_spread_has_no_p():
    e = E.unpaired([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], "less")
    assert math.isnan(e.p) and any("sd 0" in note for note in e.notes)


# ---------------------------------------------------------------- equivalence

def test_tost_paired_is_two_shifted_ttest_rel():
    a = np.array([2.31, 2.28, 2.35, 2.30, 2.26])
    b = np.array([2.30, 2.30, 2.33, 2.31, 2.25])
    m = 0.05
    e = E.equivalence(a, b, m, units="nats")
    p_low = stats.ttest_rel(a + m, b, alternative="greater").pvalue
    p_high = stats.ttest_rel(a - m, b, alternative="less").pvalue
    assert e.p == pytest.approx(max(p_low, p_high))
    assert e.test == "TOST paired t" and e.direction == "equivalent"
    assert e.ci95 == pytest.approx(E.paired(a, b, "less").ci95)
    assert E.verdict(e, "equivalent", e.p, margin=m) == "supported"


def test_tost_unpaired_is_two_shifted_welch_tests():
    a, b = A, B
    m = 0.2
    e = E.equivalence(a, b, m, paired=False)
    p_low = stats.ttest_ind(a + m, b, equal_var=False, alternative="greater").pvalue
    p_high = stats.ttest_ind(a - m, b, equal_var=False, alternative="less").pvalue
    assert e.p == pytest.approx(max(p_low, p_high)) and e.test == "TOST Welch t"


def test_tost_outside_margin_is_contradicted():
    e = E.equivalence(A, B, 0.01)                                # Δ ≈ -0.08, CI well below -0.01
    assert e.ci95[1] < -0.01
    assert E.verdict(e, "equivalent", e.p, margin=0.01) == "contradicted"


# ---------------------------------------------------------------- proportions

def test_fisher_against_scipy():
    for direction in ("less", "greater"):
        e = E.proportions(12, 40, 4, 40, direction)
        assert e.p == pytest.approx(stats.fisher_exact([[12, 28], [4, 36]], alternative=direction).pvalue)
    assert e.estimate == pytest.approx(0.2) and (e.n_a, e.n_b) == (40, 40)


@pytest.mark.parametrize("counts,want", [((56, 70, 48, 80), (0.2000, 0.0524, 0.3339)),
                                         ((9, 10, 3, 10), (0.6000, 0.1705, 0.8090))])
def test_newcombe_ci_against_newcombe_1998_table_ii(counts, want):
    """Newcombe (1998), Stat Med 17:873, Table II, method 10 (hybrid score, no continuity correction)."""
    e = E.proportions(*counts, "greater")
    assert e.estimate == pytest.approx(want[0], abs=5e-5)
    assert e.ci95 == pytest.approx(want[1:], abs=5e-5)


def test_cohen_h_hand_value():
    e = E.proportions(56, 70, 48, 80, "greater")
    h = 2 * math.asin(math.sqrt(0.8)) - 2 * math.asin(math.sqrt(0.6))
    assert e.effect_size == {"name": "cohen_h", "value": pytest.approx(h)}
    assert h == pytest.approx(0.4421, abs=1e-4)


def test_proportions_reject_bad_counts():
    with pytest.raises(ValueError):
        E.proportions(5, 4, 1, 4, "greater")


# ---------------------------------------------------------------- holm

def test_holm_hand_example():
    assert E.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_none_stays_clipped_and_monotone():
    out = E.holm([None, 0.5, 0.6, None, 0.001])
    assert out[0] is None and out[3] is None
    assert out[1:3] == pytest.approx([1.0, 1.0]) and out[4] == pytest.approx(0.003)
    p = np.random.default_rng(3).uniform(0, 0.2, 8).tolist()
    adj = E.holm(p)
    order = np.argsort(p)
    assert all(np.diff(np.array(adj)[order]) >= 0) and all(x >= y for x, y in zip(adj, p))
    with pytest.raises(ValueError):
        E.holm([0.5, 1.5])


# ---------------------------------------------------------------- verdict

def test_verdict_boundaries():
    assert E.verdict(ev((-0.2, -0.01)), "less", 0.01) == "supported"
    assert E.verdict(ev((-0.2, -0.01)), "less", 0.05) == "not enough evidence"   # Holm p must be < 0.05
    assert E.verdict(ev((-0.2, 0.0)), "less", 0.001) == "not enough evidence"    # CI touches 0
    assert E.verdict(ev((0.01, 0.2)), "less", 0.9) == "contradicted"
    assert E.verdict(ev((-0.1, 0.1)), "less", 0.2) == "not enough evidence"
    assert E.verdict(ev((0.01, 0.2), direction="greater"), "greater", 0.01) == "supported"
    assert E.verdict(ev((-0.2, -0.01), direction="greater"), "greater", 0.99) == "contradicted"
    assert E.verdict(ev((-0.2, -0.01), n=2), "less", 0.01) == "not enough evidence"
    assert E.verdict(None, "less", None) == "not enough evidence"
    assert E.verdict(ev((-0.2, -0.01)), "less", None) == "not enough evidence"


def test_verdict_equivalence_boundaries():
    eq = lambda ci: ev(ci, direction="equivalent")  # noqa: E731
    assert E.verdict(eq((-0.02, 0.03)), "equivalent", 0.01, margin=0.05) == "supported"
    assert E.verdict(eq((-0.02, 0.03)), "equivalent", 0.2, margin=0.05) == "not enough evidence"
    assert E.verdict(eq((-0.02, 0.06)), "equivalent", 0.01, margin=0.05) == "not enough evidence"
    assert E.verdict(eq((0.06, 0.1)), "equivalent", 0.9, margin=0.05) == "contradicted"
    assert E.verdict(eq((-0.1, -0.06)), "equivalent", 0.9, margin=0.05) == "contradicted"


def test_verdict_rejects_mismatched_questions():
    with pytest.raises(ValueError):
        E.verdict(ev((-0.2, -0.01)), "greater", 0.01)          # evidence was for "less"
    with pytest.raises(ValueError):
        E.verdict(ev((-0.2, -0.01), direction="equivalent"), "equivalent", 0.01)   # no margin
    with pytest.raises(ValueError):
        E.verdict(ev((-0.2, -0.01)), "less", 0.01, margin=0.1)


def test_verdict_words_are_the_published_set():
    assert E.VERDICTS == ("supported", "contradicted", "not enough evidence", "untestable here")


# ---------------------------------------------------------------- sizing a replication

def test_n_needed_against_hand_normal_approximation():
    # z_0.95 = 1.6449, z_0.80 = 0.8416 (printed table): ((1.6449 + 0.8416) * 1 / 0.5)^2 = 24.73
    normal = ((1.6449 + 0.8416) * 1.0 / 0.5) ** 2
    n = E.n_needed(1.0, 0.5)
    assert math.ceil(normal) == 25 and 25 <= n <= 28
    power = lambda k: stats.nct.sf(stats.t.ppf(0.95, k - 1), k - 1, 0.5 * math.sqrt(k))  # noqa: E731
    assert power(n) >= 0.8 > power(n - 1)


def test_n_needed_monotone_and_edge_cases():
    ns = [E.n_needed(sd, 0.26) for sd in (0.02, 0.08, 0.2, 0.5, 1.0)]
    assert ns == sorted(ns) and ns[0] >= 2
    assert E.n_needed(0.3, -0.26) == E.n_needed(0.3, 0.26)
    assert E.n_needed(0.3, 0.26, one_sided=False) > E.n_needed(0.3, 0.26)
    assert E.n_needed(0.3, 0.0) is None and E.n_needed(0.3, float("nan")) is None
    assert E.n_needed(float("nan"), 0.26) is None
    assert E.n_needed(10.0, 0.01, max_n=100) is None
    assert E.n_needed(0.0, 0.26) == 5 and E.n_needed(0.0, 0.26, one_sided=False) == 6  # 2^-n floor


def test_power_line_sentences():
    e = E.paired(A[:3], B[:3], "less", units="nats")
    line = E.power_line(e, 0.03)
    need = max(3, E.n_needed(e.sd, 0.03, one_sided=False))
    assert f"sd of differences {e.sd:.3g} nats" in line and f"about {need} seeds (have 3)" in line
    zero = E.paired([3.0, 4.0, 5.0], [2.0, 3.0, 4.0], "greater")
    assert "no spread" in E.power_line(zero, 0.5) and "at least 6 seeds" in E.power_line(zero, 0.5)
    assert "no effect size" in E.power_line(e, None)
    assert "per variant" in E.power_line(E.unpaired(A, B, "less"), 0.05)


# ---------------------------------------------------------------- JSON

def test_as_dict_is_strict_json():
    cases = [E.paired(A, B, "less"), E.paired([3.0, 4.0, 5.0], [2.0, 3.0, 4.0], "greater"),
             E.unpaired(A, B, "less"), E.equivalence(A, B, 0.1), E.proportions(3, 8, 1, 8, "greater"),
             E.paired([1.0], [2.0], "less")]
    for e in cases:
        d = e.as_dict()
        json.dumps(d, allow_nan=False)
        assert set(d) >= {"test", "n", "estimate", "ci95", "p", "effect_size", "check", "units", "notes"}
    assert cases[1].as_dict()["ci95"] == [None, None]


def test_power_line_says_when_the_observed_effect_is_far_below_the_sources():
    a = [2.000, 2.010, 1.995, 2.004, 2.001]
    b = [x + d for x, d in zip(a, [0.006, 0.004, 0.008, 0.005, 0.007])]   # ours: about -0.006
    e = E.paired(a, b, "less", units="nats")
    assert "40x smaller than the source's (-0.24 nats)" in E.power_line(e, -0.24)
    assert "smaller than the source's" not in E.power_line(e, -0.01)      # comparable: nothing added
    assert "opposite sign" in E.power_line(e, 0.24)
