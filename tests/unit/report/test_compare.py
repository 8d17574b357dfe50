"""`normlab compare DIR_A DIR_B`: claims and metrics of two experiment folders side by side (issue 27)."""
import json
import re

from oneline import invoke, refused

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _results(folder, seeds, verdicts, loss):
    folder.mkdir(parents=True)
    claims = [{"id": i, "text": f"claim {i}", "verdict": v, "n": len(seeds),
               "effect": {"estimate": -0.1, "ci95": [-0.2, 0.0]}} for i, v in verdicts.items()]
    table = {"Final val loss": {"pre": {"mean": loss, "std": 0.01}, "post": {"mean": loss + 0.3, "std": 0.02}}}
    (folder / "results.json").write_text(json.dumps({"experiment": "prepost", "seeds": seeds, "claims": claims,
                                                     "table": table, "preset": None, "overrides": []}))
    return folder


def test_compare_puts_claims_and_metrics_side_by_side(tmp_path):
    a = _results(tmp_path / "a", [0, 1], {"x": "supported", "y": "not enough evidence", "z": "supported"}, 2.0)
    b = _results(tmp_path / "b", [5, 6], {"x": "supported", "y": "contradicted"}, 2.25)
    r = invoke("compare", a, b, env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    lines = ANSI.sub("", r.output).splitlines()
    assert max(map(len, lines)) <= 120
    text = "\n".join(lines)
    assert "seeds [0, 1]" in text and "seeds [5, 6]" in text
    row_x = next(line for line in lines if "claim x" in line)
    assert row_x.count("supported") == 2 and "same verdict" in row_x
    row_y = next(line for line in lines if "claim y" in line)
    assert "not enough evidence" in row_y and "contradicted" in row_y and "not decided" in row_y
    assert "1 of 2 shared claims have the same verdict" in text and "1 claim(s) appear on one side only" in text
    pre = next(line for line in lines if "Final val loss" in line and " pre " in line)
    assert "2 ± 0.01" in pre and "2.25 ± 0.01" in pre and "+0.25" in pre


def test_compare_refuses_a_folder_without_results(tmp_path):
    a = _results(tmp_path / "a", [0], {"x": "supported"}, 2.0)
    (tmp_path / "empty").mkdir()
    refused(invoke("compare", a, tmp_path / "empty"), "empty", "results.json")
