"""The suite never sees the checkout's working directory: `make demo` then `make test` must pass, and a
`runs/prepost` the demo left must not change what a planning test finds (issue 24: three tests read it)."""
import os
from pathlib import Path

from repo import REPO


def test_a_test_runs_in_an_empty_folder_outside_the_checkout():
    cwd = Path(os.getcwd()).resolve()
    assert REPO not in (cwd, *cwd.parents) and not any(cwd.iterdir())
