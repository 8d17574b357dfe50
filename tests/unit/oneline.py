"""What a refused command must look like, for the bad-input and no-pickle suites.

`refused(result, *names)`: exit code 2 (or the one given), no traceback anywhere, and exactly one line
on stderr that starts with `error:` and names each of `names` (a key, a file). click's own argument
errors print their usage block first (Usage / Try ... / Error: ...); that block is accepted and its
one `Error:` line is the line checked. `snapshot(root)` is every file under root with its bytes, to
show that a refused command changed nothing.
"""
import hashlib
from pathlib import Path

from click.testing import CliRunner

from normlab.cli import main

IGNORED = (".lock",)  # the run lock: a process writes its pid there while it holds it


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def error_line(stderr: str) -> str:
    """The one line a refusal prints (click's usage block around an argument error is allowed)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("Usage:"):
        assert any(line.startswith("Try '") for line in lines), stderr
        lines = [line for line in lines if line.startswith("Error:")]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    return lines[0]


def refused(result, *names, code=2) -> str:
    everything = (result.output or "") + (result.stderr or "")
    assert "Traceback" not in everything, everything
    assert result.exit_code == code, f"exit {result.exit_code} (wanted {code}); stderr: {result.stderr!r}; " \
                                     f"exception: {result.exception!r}"
    line = error_line(result.stderr)
    assert line.startswith(("error: ", "Error: ")), line
    assert "internal error" not in line and "(config)" not in line, line   # a bug, or a source it lost
    for name in names:
        assert str(name) in line, f"{name!r} not named in: {line}"
    return line


def snapshot(root) -> dict[str, str]:
    """{relative path: sha256 of its bytes} of every file under root (folders as 'dir')."""
    root = Path(root)
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name in IGNORED:
            continue
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() and not p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest() \
            if p.is_file() else "other"
    return out


def changed(before: dict, after: dict) -> list[str]:
    """Paths added, removed or rewritten with other bytes."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
