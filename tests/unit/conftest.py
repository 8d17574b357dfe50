"""Session fixtures of the safety suites: tiny trained runs and one sweep, built once, copied by each case."""
import pytest

from tinyruns import run_sweep, train_runs


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """root/done, root/part, root/div (tinyruns.train_runs); never modified, cases copy them."""
    return train_runs(tmp_path_factory.mktemp("tiny-runs"))


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """(experiment.yaml, --out folder) of a one-run `normlab run` (tinyruns.run_sweep); cases copy it."""
    return run_sweep(tmp_path_factory.mktemp("tiny-sweep"))
