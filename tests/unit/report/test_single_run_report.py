"""`normlab report RUN_DIR`: one run's report (curves, results, samples) written into its directory (issue 27)."""
import json

from oneline import invoke

from runfixtures import decaying, write_run


def test_report_of_one_run_directory(tmp_path):
    write_run(tmp_path, "debug", 0, decaying(2.0, 0, n=60), val=2.2, samples=["maria", "jo"])
    run = tmp_path / "debug-seed0"
    r = invoke("report", run)
    assert r.exit_code == 0, r.output + r.stderr
    for name in ("report.md", "report.html", "results.json", "loss_curves.png"):
        assert (run / name).is_file(), name
    md = (run / "report.md").read_text()
    assert md.startswith("# Run debug-seed0") and "Outcome: no declared claims" in md and "## Claims" not in md
    assert "| Final val loss | 2.200 |" in md and "maria" in md
    results = json.loads((run / "results.json").read_text())
    assert [r["name"] for r in results["runs"]] == ["debug-seed0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debug-seed0"]   # nothing written beside the run
