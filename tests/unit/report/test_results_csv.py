"""results.csv (one row per run) and claims.csv (one row per claim) beside results.json (issue 27)."""
import csv
import json

from normlab.experiments import load_experiment
from normlab.report import build_report

from runfixtures import decaying, write_experiment, write_run
from repo import REPO


def test_csv_files_hold_the_runs_and_claims_of_results_json(tmp_path):
    exp = tmp_path / "prepost"
    runs = [write_run(exp, v, s, decaying(2.0 + 0.2 * i, s), val=2.0 + 0.2 * i + 0.01 * s)
            for i, v in enumerate(["pre", "post", "none"]) for s in range(3)]
    write_experiment(exp, "prepost", ["pre", "post", "none"], runs, [0, 1, 2], preset=None, overrides=[])
    paths = build_report(exp, load_experiment("prepost"))
    results = json.loads(paths["results.json"].read_text())
    rows = list(csv.DictReader(paths["results.csv"].open()))
    assert [r["name"] for r in rows] == [r["name"] for r in results["runs"]] and len(rows) == 9
    post1 = next(r for r in rows if r["name"] == "post-seed1")
    assert post1["variant"] == "post" and post1["seed"] == "1" and float(post1["val_loss"]) == 2.21
    claims = list(csv.DictReader(paths["claims.csv"].open()))
    assert [c["id"] for c in claims] == [c["id"] for c in results["claims"]]
    first = results["claims"][1]
    assert claims[1]["verdict"] == first["verdict"] and float(claims[1]["effect"]) == first["effect"]["estimate"]
    assert claims[1]["units"] == "nats/token" and float(claims[1]["p_holm"]) == first["p_holm"]


def test_results_json_follows_its_documented_schema(tmp_path):
    import pytest

    jsonschema = pytest.importorskip("jsonschema")

    schema = json.loads((REPO / "docs" / "results.schema.json").read_text())
    exp = tmp_path / "prepost"
    runs = [write_run(exp, v, s, decaying(2.0 + 0.2 * i, s), val=2.0 + 0.2 * i, status="diverged" if
                      (v, s) == ("none", 2) else "complete") for i, v in enumerate(["pre", "post", "none"])
            for s in range(3)]
    write_experiment(exp, "prepost", ["pre", "post", "none"], runs, [0, 1, 2], preset="smoke", overrides=[])
    results = json.loads(build_report(exp, load_experiment("prepost"))["results.json"].read_text())
    jsonschema.validate(results, schema)
    broken = {**results, "claims": [{**results["claims"][0], "verdict": "probably"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
