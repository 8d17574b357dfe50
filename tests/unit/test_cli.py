"""The CLI end to end on tiny settings (each command a few seconds)."""
import json

from click.testing import CliRunner

from normlab.cli import main


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_run_prepost_tiny_end_to_end(tmp_path):
    r = invoke("run", "prepost", "train.steps=30", "train.eval_every=15", "--seeds", "3-4", "--jobs", 2,
               "--out", tmp_path)
    assert r.exit_code == 0, r.output
    [exp] = tmp_path.glob("prepost-seeds3-4-mod*")   # another seed set and overrides: a folder of its own
    for f in ("report.md", "report.html", "results.json", "loss_curves.png", "avg_loss.png"):
        assert (exp / f).exists(), f
    results = json.loads((exp / "results.json").read_text())
    assert results["table"]["Parameters"]["pre"]["mean"] == 25_968 and results["seeds"] == [3, 4]
    assert sorted(r["name"] for r in results["runs"]) == sorted(f"{v}-seed{s}" for v in ("pre", "post", "none")
                                                                 for s in (3, 4))
    assert {r["status"] for r in results["runs"]} == {"complete"}
    assert "report:" in r.output and "│Avg loss (first 50 steps)" in r.output and "┃claim" in r.output
    assert "Outcome: " in r.output and " of 6 claims" in r.output and "**" not in r.output   # rich, not Markdown
    assert "No-Norm (modified: train.steps=30, train.eval_every=15)\n" in (exp / "report.md").read_text()
    again = invoke("run", "prepost", "train.steps=30", "train.eval_every=15", "--seeds", "3-4", "--out", tmp_path)
    assert again.exit_code == 0 and "pre-seed3" not in again.output   # finished runs are reused, not retrained
    assert "(0 to train, 6 finished already; 0 task(s))" in again.output


def test_seeds_are_chosen_on_the_command_line_not_by_train_seed(tmp_path):
    r = CliRunner().invoke(main, ["run", "prepost", "train.seed=10", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--seeds" in r.output and "Traceback" not in r.output
    for bad in ("0", "5-2", "a,b", "1,2,x", "5000000"):
        r = CliRunner().invoke(main, ["run", "prepost", "--seeds", bad, "--out", str(tmp_path)])
        assert r.exit_code == 2 and "--seeds" in r.output, (bad, r.output)
    from normlab.experiments import parse_seeds

    assert parse_seeds("5", 3) == [0, 1, 2, 3, 4] and parse_seeds("10-14", 3) == [10, 11, 12, 13, 14]
    assert parse_seeds("3,7,11", 3) == [3, 7, 11] and parse_seeds(None, 3) == [0, 1, 2]


def test_train_sample_and_report_commands(tmp_path):
    r = invoke("train", "debug", f"out_dir={tmp_path}", "name=one")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[: r.stdout.rindex("}") + 1])["status"] == "complete"   # log lines go to stderr
    s = invoke("sample", tmp_path / "one", "--n", 4, "--prompt", "ma")
    lines = s.output.strip().splitlines()
    assert s.exit_code == 0 and len(lines) == 4 and all(line.startswith("ma") for line in lines)
    rep = invoke("report", tmp_path)
    assert rep.exit_code == 0 and "report.html" in rep.output


def test_config_errors_exit_2_with_one_clear_line(tmp_path):
    r = CliRunner().invoke(main, ["train", "debug", "model.norm.placment=post"])
    assert r.exit_code == 2
    assert "error: unknown key model.norm.placment" in r.output and "did you mean model.norm.placement?" in r.output
    assert "Traceback" not in r.output


def test_sample_refuses_a_non_run_directory(tmp_path):
    r = CliRunner().invoke(main, ["sample", str(tmp_path)])
    assert r.exit_code == 2 and "not a run directory" in r.output


def test_bad_prompt_character(tmp_path):
    invoke("train", "debug", f"out_dir={tmp_path}", "name=p", "train.steps=2")
    r = CliRunner().invoke(main, ["sample", str(tmp_path / "p"), "--prompt", "Zq!"])
    assert r.exit_code == 2 and "not in the vocabulary" in r.output


def test_list_and_show():
    out = invoke("list").output
    for word in ("prepost", "rmsnorm", "layernorm", "identity", "pre", "post", "none", "names"):
        assert word in out
    fields = invoke("list", "fields").output
    assert "model.norm.placement" in fields and "where the norms sit" in fields
    shown = invoke("show", "prepost", "model.norm.placement=post").output
    assert "placement: post" in shown and "n_layer: 8" in shown


def test_list_pairs_prints_the_grid_and_reasons():
    out = invoke("list", "pairs").output
    dyt_row = next(line for line in out.splitlines() if line.strip().startswith("dyt "))
    header = next(line for line in out.splitlines() if "deepnorm" in line and "rezero" in line)
    cells = dict(zip(header.split(), dyt_row.split()[1:]))
    assert cells == {"deepnorm": "refused", "hybrid": "refused", "lns": "ok", "mixln": "refused", "none": "ok*",
                     "peri": "ok", "post": "refused", "pre": "ok", "reorder": "ok", "rezero": "ok*"}
    assert "dyt x post: norm kind dyt does not normalize" in out
    assert "identity x pre: norm kind identity in the 'in' slots" in out
    norms = invoke("list", "norms").output
    assert "dyt" in norms and "tanh(a * x)" in norms and "Zhu et al. 2025" in norms
    places = invoke("list", "placements").output
    assert "deepnorm" in places and "(2L)^¼" in places and "arXiv 2203.00555" in places


def test_refused_pair_is_one_clear_line(tmp_path):
    r = CliRunner().invoke(main, ["train", "debug", "model.norm.kind=dyt", "model.norm.placement=post",
                                  f"out_dir={tmp_path}"])
    assert r.exit_code == 2 and "is refused: norm kind dyt does not normalize" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "debug").exists()
