import pytest


def pytest_collection_modifyitems(config, items):
    """Every test in tests/system is marked `system`: its subject is a process boundary (kill -9 and resume, a
    sweep's signals and pipes, Chromium, torchrun, Ray, benchmark scripts), each case a few seconds to a minute of
    real processes. `make test` leaves them out; `make test-system` (and .ci/run, after `make test`) runs them."""
    for item in items:
        if "tests/system/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("system/"):
            item.add_marker(pytest.mark.system)
