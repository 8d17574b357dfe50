"""The summary `normlab run` prints (report/terminal.py): rich tables that fit the terminal's width, no Markdown
markup, the outcome line first, each distinct warning once with its count; a stack's time printed once (issue 27)."""
import re

from normlab.experiments import load_experiment
from normlab.experiments.run import _done_line
from normlab.report import build_report, summary_table

from runfixtures import decaying, write_experiment, write_run

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LEAK = "67 % of validation documents also appear in train"


def _experiment(root, name, variants, seeds=range(3), warn=()):
    runs = [write_run(root, v, s, decaying(2.0 + 0.1 * i, s), val=2.0 + 0.1 * i,
                      summary={"warnings": [LEAK] if warn == "all" or (v, s) in warn else []})
            for i, v in enumerate(variants) for s in seeds]
    return write_experiment(root, name, variants, runs, list(seeds), preset=None, overrides=[])


def _lines(text):
    return ANSI.sub("", text).splitlines()


def test_summary_is_rich_tables_within_the_width_with_warnings_once(tmp_path):
    exp = _experiment(tmp_path / "prepost", "prepost", ["pre", "post", "none"], warn="all")
    spec = load_experiment("prepost")
    build_report(exp, spec)
    for width in (120, 100):
        lines = _lines(summary_table(exp, spec, width=width))
        assert max(map(len, lines)) <= width, max(map(len, lines))
        assert lines[0].startswith("Outcome: ") and lines[0].endswith(" of 6 claims")
        text = "\n".join(lines)
        assert "**" not in text and "\\|" not in text and "|---" not in text    # no Markdown markup
        assert "┃claim" in text and "Results (mean ± sd over seeds)" in text
        flat = " ".join(line.strip() for line in lines)     # a long warning wraps at the width
        assert flat.count(LEAK) == 1 and flat.count("warning (") == 1
        assert f"warning (9 of 9 runs: pre-seed0, pre-seed1, pre-seed2 and 6 more): {LEAK}" in flat


def test_many_variants_fit_too(tmp_path):
    zoo = list(load_experiment("zoo").variants)[:12]
    exp = _experiment(tmp_path / "zoo", "zoo", zoo, seeds=range(2), warn={(zoo[0], 0)})
    lines = _lines(summary_table(exp, load_experiment("zoo"), width=120))
    assert max(map(len, lines)) <= 120
    flat = " ".join(line.strip() for line in lines)
    assert flat.count(LEAK) == 1 and "warning (1 of 24 runs: " in flat


def test_a_stacked_member_does_not_print_the_stacks_time():
    alone = {"status": "complete", "val_loss": 2.0, "train_time_s": 3.2}
    member = {**alone, "stacked": {"members": 5, "group_train_time_s": 3.2}}
    assert _done_line("pre-seed0", alone) == "  pre-seed0: complete, val loss 2.0000 (3.2 s)"
    assert _done_line("pre-seed0", member) == "  pre-seed0: complete, val loss 2.0000"
