"""Evaluations cost at most 10 % of a run: the rule (loop.eval_batches_for), every shipped experiment's runs
within it, and the warning a run whose measured evaluations took more gets."""
from types import SimpleNamespace

import pytest

from normlab.experiments import expand, list_experiments, load_experiment, parse_seeds
from normlab.training.loop import EVAL_SHARE, FORWARD_SHARE, eval_batches_for, eval_share_warning


def test_the_rule_keeps_the_estimated_share_under_the_bound():
    for steps, every in [(1000, 250), (300, 30), (5000, 100), (10, 1), (2000, 2000)]:
        n = eval_batches_for(steps, every)
        evals = steps // every + 1
        assert n == 1 or n * evals * FORWARD_SHARE <= EVAL_SHARE * steps < (n + 1) * evals * FORWARD_SHARE


LONG_RUN = 1000   # steps: the rule binds long runs (issue 28); a short run's evaluations cost seconds


@pytest.mark.parametrize("name", list_experiments())
def test_every_shipped_experiment_evaluates_within_the_rule(name, tmp_path):
    """Long runs keep the rule. Short ones may spend more on a precise final loss: proxies' 150-step runs of
    batch 1 read 128 one-sequence validation batches (4,096 tokens), about a second per run."""
    spec = load_experiment(name)
    for run in expand(spec, [], parse_seeds(None, spec.seeds), str(tmp_path), None):
        t = run.cfg.train
        if t.steps >= LONG_RUN:
            assert t.eval_batches <= eval_batches_for(t.steps, t.eval_every), (run.cfg.name, t.eval_batches)


def test_a_run_whose_evaluations_took_over_a_tenth_is_warned():
    cfg = SimpleNamespace(eval_batches=200, eval_every=250, steps=1000)
    assert eval_share_warning(1.0, 100.0, cfg) is None
    assert eval_share_warning(0.5, 1.0, cfg) is None     # a one-second run: the timer's noise, no warning
    said = eval_share_warning(30.0, 100.0, cfg)
    assert "30%" in said and "train.eval_batches=200" in said and f"{eval_batches_for(1000, 250)} batches" in said
