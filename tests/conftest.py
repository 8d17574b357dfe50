import pytest
import torch

import normlab as nl


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def tiny_config(tmp_path, *overrides):
    """The shipped `debug` config writing under tmp_path (a few seconds of CPU at most)."""
    return nl.load_config("debug", [f"out_dir={tmp_path}", *overrides])


@pytest.fixture
def tiny(tmp_path):
    return lambda *o: tiny_config(tmp_path, *o)
