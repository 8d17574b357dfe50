"""Console output: the log lines a non-TTY `normlab train` prints (nohup, Slurm, CI), checked field by
field against metrics.jsonl; the rich bar on a terminal; the choice of display."""
import io
import json
import re

import pytest
from click.testing import CliRunner

import normlab as nl
from normlab.cli import main
from normlab.rundir import read_metrics
from normlab.training import console

LINE = re.compile(r"^(?P<name>\S+) \| step +(?P<step>\d+)/(?P<total>\d+) \| loss (?P<loss>\S+)"
                  r"(?: \| val_loss (?P<val>\S+))? \| lr (?P<lr>\S+) \| (?P<speed>[\d.]+[kMG]?) tok/s"
                  r" \| eta (?P<eta>\d+:\d\d:\d\d)$")


def test_format_line_holds_every_field():
    line = console.format_line("pre-seed0", 20, 300, loss=2.81234, val_loss=2.9, lr=2.1e-3, tokens_per_s=12_345,
                               eta_s=3725)
    assert line == "pre-seed0 | step  20/300 | loss 2.8123 | val_loss 2.9000 | lr 2.10e-03 | 12.3k tok/s | eta 1:02:05"
    assert console.format_line("x", 5, 10) == "x | step  5/10"


def test_print_every_defaults_to_about_20_lines_on_log_flushes(tiny):
    cfg = tiny("train.steps=1000")
    assert console.print_every(cfg.train) == 50
    assert console.print_every(tiny("train.steps=30").train) == 10          # never more often than a flush
    assert console.print_every(tiny("train.steps=1000", "train.log_every=30").train) == 60
    assert console.print_every(tiny("train.print_every=7").train) == 7


def test_non_tty_train_prints_a_line_every_print_every_steps_and_per_eval(tmp_path):
    r = CliRunner().invoke(main, ["train", "debug", f"out_dir={tmp_path}", "name=logged", "train.steps=40",
                                  "train.print_every=20", "train.log_every=10", "train.eval_every=15"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    head, *lines = [ln for ln in r.output.splitlines() if ln.startswith("logged |")]
    assert re.fullmatch(r"logged \| [\d,]+ parameters on cpu, 40 steps -> .*logged", head), head
    fields = [LINE.match(ln) for ln in lines]
    assert all(fields), lines
    # step lines at 20 and 40 (print_every), eval lines at 15, 30 and the final 40, each at the flush that has it
    assert [(int(f["step"]), f["val"] is not None) for f in fields] == [(15, True), (20, False), (30, True),
                                                                       (40, False), (40, True)]
    records = read_metrics(tmp_path / "logged" / "metrics.jsonl")
    steps = {r["step"]: r for r in records if "loss" in r}
    evals = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    for f in fields:
        step = int(f["step"])
        assert f["name"] == "logged" and f["total"] == "40"
        if f["val"] is not None:
            assert float(f["val"]) == pytest.approx(evals[step], abs=5e-5)
            continue
        window = [steps[s]["loss"] for s in range(step - 20, step)]        # the mean since the last step line
        assert float(f["loss"]) == pytest.approx(sum(window) / 20, abs=5e-5)
        assert float(f["lr"]) == pytest.approx(steps[step - 1]["lr"], rel=5e-3)
    assert not any(ln.startswith("logged |") for ln in r.stdout.splitlines())   # stderr: stdout stays the summary
    assert json.loads(r.stdout[: r.stdout.rindex("}") + 1])["status"] == "complete"


def test_the_terminal_bar_shows_loss_and_tokens_per_s(tiny):
    from rich.console import Console

    out = io.StringIO()
    bar = console.TerminalBar(Console(file=out, force_terminal=True, width=150))
    nl.train(tiny("name=bar", "train.steps=20", "train.eval_every=10"), display="none", callbacks=[bar])
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())              # without the terminal's colours
    assert re.search(r"20/20 loss \d\.\d{4} [\d.]+k? tok/s", text), text[-400:]
    assert re.search(r"bar \| step 10/20 \| loss \S+ \| val_loss \S+", text)    # eval lines above the bar
    assert bar.bar is None                                                     # stopped at the end


def test_display_choice(monkeypatch):
    monkeypatch.setattr(console, "in_notebook", lambda: False)
    monkeypatch.setattr("sys.stdout", io.StringIO())                          # not a TTY
    assert [type(d) for d in console.display_callbacks("auto")] == [console.LogLines]
    monkeypatch.setattr(console, "in_notebook", lambda: True)
    assert [type(d) for d in console.display_callbacks("auto")] == [console.NotebookBar]
    assert console.display_callbacks("none") == []
    with pytest.raises(nl.ConfigError, match="display='fancy' is not a display; choose one of: auto, lines"):
        console.display_callbacks("fancy")
