"""The Python / notebook API: nl.train from a notebook cell (again), nl.load_run, run names after the
config, and examples/quickstart.ipynb executed in a real kernel."""
import builtins
import json
import sys

import pytest
import torch

import normlab as nl
from normlab.api import by_step
from normlab.rundir import latest_checkpoint, read_metrics

from repo import REPO

NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    cfg = nl.load_config("debug", [f"out_dir={out}", "train.steps=20", "train.eval_every=10"])
    summary = nl.train(cfg, display="none")
    return out / "debug", cfg, summary


def test_load_run_gives_config_model_tokenizer_summary_and_metrics(trained):
    run_dir, cfg, summary = trained
    run = nl.load_run(run_dir)
    assert isinstance(run.config, nl.RunConfig) and run.config.name == "debug" and run.config.model.vocab_size > 0
    assert run.summary == json.loads((run_dir / "summary.json").read_text()) and run.summary["val_loss"] == summary["val_loss"]
    assert run.step == 20 and not run.model.training
    from safetensors.torch import load_file

    saved = load_file(latest_checkpoint(run_dir) / "model.safetensors")
    assert all(torch.equal(run.model.state_dict()[k], v) for k, v in saved.items())
    assert run.tokenizer.decode(run.tokenizer.encode("maria")) == "maria"
    records = read_metrics(run_dir / "metrics.jsonl")
    df = run.metrics
    assert len(df) == len({r["step"] for r in records}) < len(records)       # one row per step (evals merged in)
    assert df["loss"].dropna().tolist() == [r["loss"] for r in records if "loss" in r]
    assert df["step"].is_unique and df["val_loss"].notna().sum() == sum("val_loss" in r for r in records)
    assert "debug" in repr(run) and "complete" in repr(run)


def test_metrics_are_a_list_of_dicts_without_pandas(trained, monkeypatch):
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("no pandas here")
        return real_import(name, *args, **kwargs)
    monkeypatch.delitem(sys.modules, "pandas", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_pandas)
    metrics = nl.load_run(trained[0]).metrics
    assert isinstance(metrics, list) and metrics == by_step(read_metrics(trained[0] / "metrics.jsonl"))


def test_metrics_after_a_resume_have_one_row_per_step(trained, tmp_path):
    """A step recorded twice (the lines after a checkpoint, written again by the resumed run) is one row: the last."""
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(trained[0], copy)
    metrics = copy / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    again = [json.dumps({**json.loads(line), "loss": 9.0}) for line in lines if '"loss"' in line][-3:]
    metrics.write_text("\n".join(lines + again) + "\n")
    df = nl.load_run(copy).metrics
    assert df["step"].is_unique and len(df) == len({json.loads(line)["step"] for line in lines})
    redone = [json.loads(line)["step"] for line in again]
    assert df.set_index("step").loc[redone, "loss"].tolist() == [9.0, 9.0, 9.0] and df["loss"].notna().sum() == 20


def test_sample_is_seeded_and_starts_with_the_prompt(trained):
    run = nl.load_run(trained[0])
    texts = run.sample(4, prompt="ma")
    assert len(texts) == 4 and all(t.startswith("ma") for t in texts)
    assert run.sample(4, prompt="ma") == texts and run.sample(4, prompt="ma", seed=1) != texts
    assert run.sample(1, prompt="ma", temperature=0) == run.sample(1, prompt="ma", temperature=0, seed=5)  # greedy
    with pytest.raises(nl.ConfigError, match="prompt"):
        run.sample(1, prompt="Zq!")


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(nl.ConfigError, match="is not a run directory"):
        nl.load_run(tmp_path)


def test_rerunning_a_cell_names_the_python_keywords_and_overwrite_works(tiny, tmp_path):
    cfg = tiny("name=cell", "train.steps=5", "train.eval_every=5")
    first = nl.train(cfg, display="none")
    with pytest.raises(nl.ConfigError) as err:
        nl.train(cfg, display="none")
    text = str(err.value)
    assert "\n" not in text and "resume=True" in text and "overwrite=True" in text and "--resume" in text
    again = nl.train(cfg, overwrite=True, display="none")
    assert again["val_loss"] == first["val_loss"]                      # same seed, same run, started over
    losses = [r["step"] for r in read_metrics(tmp_path / "cell" / "metrics.jsonl") if "loss" in r]
    assert losses == list(range(5))                                    # the old records went with the old run


def test_runs_are_named_after_their_config():
    assert nl.load_config("debug").name == "debug"
    assert nl.load_config("base").name == "base"
    assert nl.load_config("prepost").name == "prepost-base"   # runs/prepost/ is `normlab run prepost`'s folder
    assert nl.load_config("prepost", ["name=mine"]).name == "mine"
    assert nl.load_config().name == "run"


def test_a_yaml_without_a_name_is_named_after_its_file(tmp_path):
    path = tmp_path / "my wide model.yaml"
    path.write_text("model:\n  d_model: 32\n")
    assert nl.load_config(path).name == "my-wide-model"


def test_quickstart_notebook_runs(tmp_path):
    why = "pip install -e '.[dev]' (nbclient, nbformat, ipykernel)"
    nbformat = pytest.importorskip("nbformat", reason=why)
    NotebookClient = pytest.importorskip("nbclient", reason=why).NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: cell.outputs for i, cell in enumerate(nb.cells) if cell.cell_type == "code"}
    text = {i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outs)
            for i, outs in outputs.items()}
    assert not any(o.output_type == "error" for outs in outputs.values() for o in outs)
    train_cell = next(i for i, c in enumerate(nb.cells) if "nl.train(" in c.source)
    assert "30/30" in text[train_cell] and "('complete'," in text[train_cell]      # the notebook bar, then the result
    plot_cell = next(i for i, c in enumerate(nb.cells) if "plt.subplots" in c.source)
    assert any("image/png" in o.get("data", {}) for o in outputs[plot_cell])
    sample_cell = next(i for i, c in enumerate(nb.cells) if "run.sample(" in c.source)
    assert text[sample_cell].count("'ma") == 5
    assert (tmp_path / "runs" / "debug" / "summary.json").is_file()
