"""examples/nanogpt_shakespeare_data.py: nanoGPT's shakespeare_char split as normlab `text:` files whose documents
keep every character, newlines included."""
import importlib.util

from normlab.data.corpora import load_documents

from repo import REPO


def _script():
    spec = importlib.util.spec_from_file_location("nanogpt_data", REPO / "examples" / "nanogpt_shakespeare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _play(speeches: int) -> str:
    return "".join(f"SPEAKER {k}:\nLine one of speech {k},\nand line two.\n\n" for k in range(speeches))


def test_the_split_is_nanogpts_and_every_character_survives(tmp_path):
    script = _script()
    text = _play(400)
    (tmp_path / "input.txt").write_text(text)
    assert script.main([str(tmp_path / "input.txt"), str(tmp_path / "out")]) == 0
    n = int(len(text) * 0.9)
    halves = {}
    for name in ("train", "val"):
        written = (tmp_path / "out" / f"{name}.txt").read_text()
        halves[name] = written.replace(script.MARKER, "")
        docs = load_documents(f"text:{tmp_path / 'out' / name}.txt")
        assert len(docs) >= 2 and all("\n" in d for d in docs)
        # documents lose only the blank line at each cut (strip) to the boundary token that replaces it
        assert len(halves[name]) - sum(len(d) for d in docs) <= 2 * len(docs)
    assert halves["train"] == text[:n] and halves["val"] == text[n:]
    # each chunk but the last ends at a speech boundary
    pieces = script.chunks(text[:n], 1000)
    assert "".join(pieces) == text[:n] and all(p.endswith("\n\n") for p in pieces[:-1]) and len(pieces) > 2


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    script = _script()
    assert script.main([str(tmp_path / "missing.txt"), str(tmp_path / "out")]) == 2
    (tmp_path / "marked.txt").write_text(_play(50) + script.MARKER)
    assert script.main([str(tmp_path / "marked.txt"), str(tmp_path / "out")]) == 2
    (tmp_path / "flat.txt").write_text("no blank lines at all\n" * 200)
    assert script.main([str(tmp_path / "flat.txt"), str(tmp_path / "out")]) == 2
    assert script.main([]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(e.startswith(("error:", "usage:")) for e in errors)
