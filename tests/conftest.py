import os

import pytest
import torch

from debugmodels import tiny_config  # tests/unit (pytest pythonpath)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Seed 0 for every test; under `make test` (pytest-xdist, one worker process per core) one intra-op thread
    per worker, so the workers do not fight over the cores (the tests' tensors are too small to gain from more)."""
    torch.manual_seed(0)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path_factory, monkeypatch):
    """Every test runs in an empty folder of its own: no test reads or writes the working directory, so a
    `runs/` left by `make demo` in the checkout cannot change what a test plans or finds (test_isolation.py)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield


@pytest.fixture
def tiny(tmp_path):
    return lambda *o: tiny_config(tmp_path, *o)
