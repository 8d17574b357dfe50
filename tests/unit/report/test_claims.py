"""Declared claims on hand-made runs: paired tests by seed, Holm, diverged seeds, std 0, preconditions,
proportions, group and pair metrics, and claims that name a missing variant."""
import numpy as np
import pytest
from scipy import stats

from normlab.config import ConfigError
from normlab.report.claims import ClaimSpec, evaluate_claims, parse_claims
from normlab.report.runs import load_run

from runfixtures import write_run


def _groups(tmp_path, table, status=None, samples=None, n=40):
    """table: {variant: [final loss per seed]} -> runs whose last-10-step mean is exactly that value."""
    groups = {}
    for v, values in table.items():
        for seed, value in enumerate(values):
            st = (status or {}).get((v, seed), "complete")
            losses = np.full(n, float(value)) if st == "complete" else np.r_[np.full(n // 2, value), np.nan]
            write_run(tmp_path, v, seed, losses, status=st, val=value if st == "complete" else None,
                      samples=(samples or {}).get(v, ()))
            groups.setdefault(v, []).append(load_run(tmp_path / f"{v}-seed{seed}"))
    return groups


def _claim(**kw):
    base = {"id": "c", "text": "a claim", "metric": {"name": "mean_train_loss", "last": 10}, "compare": "a < b"}
    return parse_claims([{**base, **kw}], "test")[0]


def test_paired_t_by_seed_matches_scipy(tmp_path):
    a, b = [2.0, 2.1, 1.9, 2.05, 2.02], [2.3, 2.35, 2.2, 2.4, 2.28]
    [r] = evaluate_claims([_claim()], _groups(tmp_path, {"a": a, "b": b}), {})
    e = r.parts[0].evidence
    assert e.n == 5 and e.estimate == pytest.approx(np.mean(np.subtract(a, b)))
    assert e.p == pytest.approx(stats.ttest_rel(a, b, alternative="less").pvalue)
    assert r.verdict == "supported" and r.p_holm == pytest.approx(r.p)


def test_the_other_direction_is_contradicted_and_noise_is_not_enough(tmp_path):
    [r] = evaluate_claims([_claim(compare="b < a")], _groups(tmp_path, {"a": [2.0, 2.1, 1.9, 2.0, 2.02],
                                                                     "b": [2.3, 2.35, 2.2, 2.4, 2.28]}), {})
    assert r.verdict == "contradicted"
    [r2] = evaluate_claims([_claim()], _groups(tmp_path / "n", {"a": [2.0, 2.3, 1.9, 2.2, 2.1],
                                                              "b": [2.1, 2.1, 2.0, 2.1, 2.15]}), {})
    assert r2.verdict == "not enough evidence"


def test_holm_adjusts_across_claims(tmp_path):
    g = _groups(tmp_path, {"a": [2.0, 2.1, 1.9, 2.05, 2.02], "b": [2.3, 2.35, 2.2, 2.4, 2.28],
                           "c": [2.01, 2.2, 1.95, 2.1, 2.0]})
    specs = parse_claims([{"id": "x", "text": "x", "metric": "final_val_loss", "compare": "a < b"},
                          {"id": "y", "text": "y", "metric": "final_val_loss", "compare": "a < c"}], "t")
    rx, ry = evaluate_claims(specs, g, {})
    small, big = sorted([rx.p, ry.p])
    assert min(rx.p_holm, ry.p_holm) == pytest.approx(2 * small)
    assert max(rx.p_holm, ry.p_holm) == pytest.approx(max(2 * small, big))


def test_fewer_than_three_seeds_is_never_supported(tmp_path):
    [r] = evaluate_claims([_claim()], _groups(tmp_path, {"a": [2.0, 2.1], "b": [3.0, 3.2]}), {})
    assert r.verdict == "not enough evidence"


def test_a_diverged_seed_is_counted_not_dropped(tmp_path):
    table = {"a": [2.0, 2.1, 1.9, 2.05, 2.02], "b": [2.3, 2.35, 2.2, 2.4, 2.28]}
    g = _groups(tmp_path, table, status={("b", 3): "diverged"})
    [nee] = evaluate_claims([_claim(metric="final_val_loss")], g, {})
    assert nee.verdict == "not enough evidence" and nee.parts[0].undefined == {"b": [3]}
    assert any("b seeds [3]" in reason for reason in nee.reasons)
    [worst] = evaluate_claims([_claim(metric="final_val_loss", diverged="ln_vocab")], g, {})
    b = [2.3, 2.35, 2.2, np.log(27), 2.28]   # the diverged seed counts as ln V, a uniform prediction
    assert worst.parts[0].evidence.n == 5 and not worst.parts[0].undefined
    assert worst.parts[0].evidence.estimate == pytest.approx(np.mean(np.subtract(table["a"], b)))


def test_a_discrete_metric_with_sd_zero_uses_the_exact_test(tmp_path):
    for n, word in ((5, "not enough evidence"), (6, "supported")):  # 5 pairs: the exact 95 % CI is unbounded
        g = _groups(tmp_path / str(n), {"a": [2.0] * n, "b": [2.0] * n}, status={("b", s): "diverged" for s in range(n)})
        [r] = evaluate_claims([_claim(metric="diverged", compare="b > a")], g, {})
        e = r.parts[0].evidence
        assert "sign-flip" in e.test and e.p == pytest.approx(0.5 ** n) and r.verdict == word


def test_proportions_use_fisher_on_pooled_counts(tmp_path):
    g = _groups(tmp_path, {"post": [2.0] * 4, "pre": [2.0] * 4},
                samples={"post": ["a", "a", "ab", "b", "a"], "pre": ["anna", "emma", "a", "liam", "zoe"]})
    [r] = evaluate_claims([_claim(metric="single_char_samples", compare="post > pre")], g, {})
    e = r.parts[0].evidence
    assert e.test.startswith("Fisher") and e.n == 20
    assert e.p == pytest.approx(stats.fisher_exact([[16, 4], [4, 16]], alternative="greater").pvalue)
    assert e.estimate == pytest.approx(16 / 20 - 4 / 20)


def test_unmet_precondition_is_untestable_with_its_reason(tmp_path):
    g = _groups(tmp_path, {"post": [2.0] * 3, "pre": [2.0] * 3}, samples={"pre": ["", "", "a"], "post": ["a"] * 3})
    [r] = evaluate_claims([_claim(metric="single_char_samples", compare="post > pre",
                                  precondition={"name": "samples_nonempty", "variant": "pre"})], g, {})
    assert r.verdict == "untestable here" and r.p is None and "33% of 9 samples are non-empty" in r.reasons[0]


def test_multi_part_claim_takes_the_weakest_part(tmp_path):
    g = _groups(tmp_path, {"a": [2.0, 2.1, 1.9, 2.05, 2.02], "b": [2.3, 2.35, 2.2, 2.4, 2.28],
                           "c": [2.0, 2.3, 1.9, 2.2, 2.1]})
    [r] = evaluate_claims([_claim(compare="a < b; a < c")], g, {})
    assert r.p == max(p.evidence.p for p in r.parts) and [p.verdict for p in r.parts][0] == "supported"
    assert r.verdict == "not enough evidence"


def test_constant_side_is_a_one_sample_test(tmp_path):
    g = _groups(tmp_path, {"a": [2.0, 2.1, 1.9, 2.05, 2.02]})
    [r] = evaluate_claims([_claim(compare="a > 1.5")], g, {})
    assert r.parts[0].evidence.p == pytest.approx(stats.ttest_1samp([2.0, 2.1, 1.9, 2.05, 2.02], 1.5,
                                                                    alternative="greater").pvalue)


def test_equivalence_within_a_margin(tmp_path):
    g = _groups(tmp_path, {"a": [2.0, 2.1, 1.9, 2.05, 2.02], "b": [2.01, 2.09, 1.91, 2.06, 2.01]})
    [close] = evaluate_claims([_claim(compare="a ~ b", margin=0.05)], g, {})
    [far] = evaluate_claims([_claim(compare="a ~ b", margin=0.001)], g, {})
    assert close.verdict == "supported" and far.verdict != "supported"


def test_group_and_pair_metrics(tmp_path):
    g = _groups(tmp_path, {"x_lr1": [2.0] * 3, "x_lr2": [2.5, 2.6, 2.55], "y_lr1": [2.0] * 3, "y_lr2": [2.1, 2.1, 2.2]})
    from normlab.report.metrics import METRICS, metric

    if "spread" not in METRICS:
        @metric("spread", scope="group")
        def spread(runs):
            vals = [r.summary["val_loss"] for r in runs]
            return max(vals) - min(vals)
    [r] = evaluate_claims([_claim(metric="spread", compare="y < x")], g, {"x": ["x_lr1", "x_lr2"],
                                                                          "y": ["y_lr1", "y_lr2"]})
    assert r.parts[0].evidence.estimate == pytest.approx(np.mean([0.1 - 0.5, 0.1 - 0.6, 0.2 - 0.55]))


def test_a_claim_naming_a_missing_variant_is_an_error():
    spec = _claim(compare="pre < psot")
    with pytest.raises(ConfigError, match="'psot' is not a variant or group"):
        spec.check_sides({"pre": {}, "post": {}}, {})
    with pytest.raises(ConfigError, match="unknown metric 'final_vall_loss'; did you mean final_val_loss"):
        _claim(metric="final_vall_loss").check_sides({"a": {}, "b": {}}, {})
    with pytest.raises(ConfigError, match="must look like 'a < b'"):
        _claim(compare="a << b").parts


def test_shipped_experiments_check_their_claims_when_they_load(tmp_path):
    from normlab.experiments import list_experiments, load_experiment

    names = list_experiments()
    assert {"prepost", "zoo", "lr-sweep", "normfree", "sinks", "nonorm", "ngpt"} <= set(names)
    for name in names:
        spec = load_experiment(name)
        assert spec.claim_specs and all(isinstance(c, ClaimSpec) and c.source and c.text for c in spec.claim_specs)
        assert spec.seeds >= 5 and spec.seeds_why, name
        assert "smoke" in spec.presets, name
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "experiment.yaml").write_text("name: bad\nvariants: {pre: {model.norm.placement: pre}}\nclaims:\n"
                                         "  - {id: x, text: t, metric: final_val_loss, compare: 'pre < post'}\n")
    with pytest.raises(ConfigError, match="'post' is not a variant or group"):
        load_experiment(str(bad))
