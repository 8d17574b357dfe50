"""README.md's Python code blocks run as written (in order, in one namespace, in a temp folder), with
the training shrunk to a few steps by overrides appended to every nl.load_config call."""
import re

import normlab as nl

from repo import REPO

README = REPO / "README.md"
TINY = ["train.steps=6", "train.eval_every=3", "train.eval_batches=1", "probes.every=3", "sample.n=1",
        "train.threads=1"]


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert len(blocks) >= 2 and any("nl.Recorder" in b for b in blocks)
    real = nl.load_config
    monkeypatch.setattr(nl, "load_config", lambda name=None, overrides=(): real(name, [*overrides, *TINY]))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks, 1):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    summary = namespace["summary"]
    assert summary["status"] == "complete" and summary["steps"] == 6
    assert (tmp_path / "runs" / "prepost-base" / "summary.json").is_file()   # where the README says it writes
    assert namespace["run"].config.model.norm.placement == "post"
    assert len(namespace["losses"].dropna()) == 6
    assert "['ma" in capsys.readouterr().out                                  # the printed samples


def test_setup_block_puts_the_cli_on_the_path():
    """A new shell that follows the README literally reaches `normlab list` (issue 27): the set-up block activates
    the venv before the Use block's first `normlab` command, and `make demo` ends by saying how."""
    text = README.read_text(encoding="utf-8")
    setup = re.search(r"## Set up and run.*?```bash\n(.*?)```", text, re.S).group(1)
    use = text.index("## Use")
    assert "source .venv/bin/activate" in setup and text.index("source .venv/bin/activate") < use
    assert ".venv/bin/normlab" in setup
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    demo = re.search(r"^demo:.*?(?=^\S|\Z)", makefile, re.S | re.M).group(0)
    lines = [line.strip() for line in demo.splitlines()[1:] if line.strip()]
    assert "normlab run prepost" in lines[0] and "activate" in lines[-1] and lines[-1].startswith("@echo")
