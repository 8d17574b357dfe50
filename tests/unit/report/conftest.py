import pytest

from normlab.report import drawing


@pytest.fixture
def drawn(monkeypatch):
    """The names of the figure files drawn (not taken from the cache) by each build."""
    calls = []
    real = drawing.draw

    def counting(jobs, meanwhile=None):
        out, mine = real(jobs, meanwhile)
        calls.append(sorted(f for job in out for f in job))
        return out, mine
    monkeypatch.setattr(drawing, "draw", counting)
    return calls
