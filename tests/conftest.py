import pytest
import torch

from debugmodels import tiny_config  # tests/unit (pytest pythonpath)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
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
