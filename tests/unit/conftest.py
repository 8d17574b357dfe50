"""Fixtures of the safety suites: tiny trained runs and one sweep (session, built once, copied by each case) and
a fresh working folder per case."""
import pytest

from tinyruns import run_sweep, train_runs


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """root/done, root/part, root/div (tinyruns.train_runs); never modified, cases copy them."""
    return train_runs(tmp_path_factory.mktemp("tiny-runs"))


@pytest.fixture(scope="session")
def sweep(tmp_path_factory):
    """(experiment.yaml, --out folder) of a one-run `normlab run` (tinyruns.run_sweep); cases copy it."""
    return run_sweep(tmp_path_factory.mktemp("tiny-sweep"))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Every case runs in its own folder (a command that wrongly succeeded writes there, never in the repo)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NORMLAB_DEBUG", raising=False)
