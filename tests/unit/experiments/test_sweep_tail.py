"""The sweep's tail: once no task is left to hand out and a core is free, the parent warms up the report's imports
there (experiments/run._warm_up_report), once, instead of after the last run."""
from normlab.experiments import run as run_module
from normlab.experiments.run import run_experiment


def test_the_report_warm_up_runs_once_in_the_tail(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(run_module, "_warm_up_report", lambda: calls.append(
        sorted(p.parent.name for p in tmp_path.glob("sweep/prepost/*/summary.json"))))
    result = run_experiment("prepost", ["train.steps=6", "probes.every=0", "sample.n=1"], seeds=1, jobs=1,
                            out=str(tmp_path / "sweep"), echo=lambda line: None)
    assert len(calls) == 1
    assert len(calls[0]) < 3   # the last task was still training: the warm-up never waits for the sweep's end
    assert result.report and all(s["status"] == "complete" for s in result.results.values())


def test_a_warm_up_that_fails_never_stops_the_runs(monkeypatch):
    import importlib

    real = importlib.import_module

    def broken(name, *args):
        if name == "scipy.stats":
            raise ImportError("scipy is broken")
        return real(name, *args)
    monkeypatch.setattr(importlib, "import_module", broken)
    run_module._warm_up_report()   # returns quietly: the report, after the runs, raises the real error there
