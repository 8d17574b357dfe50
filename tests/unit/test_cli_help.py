"""The CLI's help: `run --help` lists the experiments, `train --help` the shipped configs, and
`list fields` every config key with its allowed values (Literal choices, Range bounds) in 100 columns."""
import dataclasses
import typing

from click.testing import CliRunner

from normlab.cli import main
from normlab.config import RunConfig
from normlab.config.load import CONFIG_DIRS
from normlab.config.schema import Range
from normlab.experiments import list_experiments


def _out(*args):
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def _leaves(cls, prefix=""):
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaves(tp, prefix + f.name + ".")
        else:
            yield prefix + f.name, tp


def test_run_help_lists_every_experiment_one_per_line():
    out = _out("run", "--help")
    lines = out.splitlines()
    for name in list_experiments():
        assert any(line.startswith(f"  {name} ") for line in lines), name


def test_train_help_lists_the_shipped_configs():
    lines = _out("train", "--help").splitlines()
    for path in CONFIG_DIRS[0].glob("*.yaml"):
        assert any(line.startswith(f"  {path.stem} ") for line in lines), path.stem


def test_list_fields_shows_every_literal_and_range_in_100_columns():
    out = _out("list", "fields")
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "Literal" not in out and "Annotated" not in out
    blocks = {}
    for line in out.splitlines()[1:]:
        if not line.startswith("   "):
            key = line.split()[0]
            blocks[key] = line
        else:
            blocks[key] += " " + line.strip()
    leaves = dict(_leaves(RunConfig))
    assert set(blocks) == set(leaves)
    for key, tp in leaves.items():
        text = " ".join(blocks[key].split())
        if typing.get_origin(tp) is typing.Literal:
            assert "one of " + " | ".join(map(str, typing.get_args(tp))) in text, text
        if typing.get_origin(tp) is typing.Annotated:
            for r in (m for m in typing.get_args(tp)[1:] if isinstance(m, Range)):
                if "e+" not in text:
                    assert r.text() in text, text
                assert " in [" in text or " in (" in text, text
    assert "float in [0, 1e+30]" in blocks["train.loss_bound"]
    assert "rmsnorm" in blocks["model.norm.kind"] and "rezero" in blocks["model.norm.placement"]
    assert "(default 'rmsnorm')" in blocks["model.norm.kind"] and "(default false)" in blocks["model.bias"]
