"""Figures kept between builds of a report, keyed by what they draw: a re-report of unchanged runs draws nothing.

A figure job (report/drawing.py) is a function of the run data and of the code that draws it, so its key is a
hash of both: every run-directory file the report reads (experiment.json; per run config.yaml, summary.json,
metrics.jsonl, samples.txt, probes/step_N.npz, by content), the source of the report, probe and experiment
modules that draw (report/, probes/, the experiment's folder), the versions of normlab, matplotlib, numpy and
Pillow, and the job's own name. One file per job, `<exp_dir>/.figure-cache/<job>.json`: JSON (no pickle) with
the key and, per figure, its caption and either the PNG (base64, with its SHA-256) or the sentence that replaces
it. A file that does not parse, has another key, lacks a field or whose PNG does not match its hash is a miss:
the job is drawn again and the file replaced, never trusted. Writes are atomic (rundir.atomic_write_text), so
two builds of one folder (`normlab report` beside `normlab run`) can at worst both draw; neither reads half a
file.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from ..rundir import atomic_write_text
from ..rundir.files import WriteError

FORMAT = 1
FOLDER = ".figure-cache"
RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "samples.txt")  # what report/runs.py reads per run
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _hash_file(h, path: Path) -> None:
    h.update(str(path.name).encode() + b"\0")
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        h.update(b"\1")
    except FileNotFoundError:
        h.update(b"\2")   # absent and empty are different inputs


def data_key(exp_dir: Path, run_dirs: list[Path]) -> str:
    """SHA-256 of the contents of every file the report reads from these runs (order as listed)."""
    h = hashlib.sha256()
    _hash_file(h, Path(exp_dir) / "experiment.json")
    for run in run_dirs:
        h.update(str(Path(run).name).encode() + b"\0run\0")
        for name in RUN_FILES:
            _hash_file(h, Path(run) / name)
        for npz in sorted((Path(run) / "probes").glob("step_*.npz")):
            _hash_file(h, npz)
    return h.hexdigest()


def code_key(extra_dirs: list[Path] = ()) -> str:
    """SHA-256 of the drawing code (report/, probes/, `extra_dirs`' *.py) and the library versions it runs on."""
    from importlib.metadata import PackageNotFoundError, version   # not the packages: a re-report imports neither

    from ..version import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(f"{FORMAT} {__version__} {installed('matplotlib')} {installed('numpy')} "
                       f"{installed('pillow')}".encode())
    for folder in (here, here.parent / "probes", *map(Path, extra_dirs)):
        for path in sorted(Path(folder).glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class FigureCache:
    """get(job, key) -> the job's encoded figures {file: (png bytes or sentence, caption)} or None; put_all()
    keeps drawn jobs, if `still()` (the inputs hashed again) says they have not changed while drawing.
    `folder=None` caches nothing (every get misses, nothing is written)."""

    def __init__(self, folder: Path | None, still=lambda: True):
        self.folder = Path(folder) if folder is not None else None
        self.still = still
        self.hits, self.misses = 0, 0

    def _path(self, job: str) -> Path:
        return self.folder / f"{_SAFE.sub('_', job)[:150]}.json"

    def get(self, job: str, key: str) -> dict | None:
        found = self._read(job, key) if self.folder is not None else None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def _read(self, job: str, key: str) -> dict | None:
        try:
            entry = json.loads(self._path(job).read_text(encoding="utf-8"))
            if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != key \
                    or entry.get("job") != job or not isinstance(entry.get("figures"), dict):
                return None
            out = {}
            for file, fig in entry["figures"].items():
                caption = fig["caption"]
                if not isinstance(file, str) or not isinstance(caption, str) or "/" in file:
                    return None
                if "text" in fig:
                    if not isinstance(fig["text"], str):
                        return None
                    out[file] = (fig["text"], caption)
                    continue
                png = base64.b64decode(fig["png"], validate=True)
                if hashlib.sha256(png).hexdigest() != fig["sha256"] or not png.startswith(b"\x89PNG\r\n\x1a\n"):
                    return None
                out[file] = (png, caption)
            return out
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None   # missing, unreadable, not JSON, not base64, a field of the wrong type: drawn again

    def get_layout(self, key: str | None) -> list | None:
        """The figure groups' layout stored under `key` (report/build.py), or None."""
        if self.folder is None or key is None:
            return None
        try:
            entry = json.loads(self._path("layout").read_text(encoding="utf-8"))
            ok = isinstance(entry, dict) and entry.get("format") == FORMAT and entry.get("key") == key
            return entry["groups"] if ok and isinstance(entry.get("groups"), list) else None
        except (OSError, ValueError, KeyError):
            return None

    def put_layout(self, key: str | None, groups: list) -> None:
        if self.folder is None or key is None or not self.still():
            return
        try:
            atomic_write_text(self._path("layout"), json.dumps({"format": FORMAT, "job": "layout", "key": key,
                                                                "groups": groups}))
        except WriteError:
            pass

    def put_all(self, drawn: dict[str, tuple[str, dict]]) -> None:
        """{job: (key, figures)}: written only when the inputs did not change while they were drawn."""
        if self.folder is None or not drawn or not self.still():
            return
        for job, (key, figures) in drawn.items():
            self.put(job, key, figures)

    def put(self, job: str, key: str, figures: dict) -> None:
        if self.folder is None:
            return
        entry = {"format": FORMAT, "job": job, "key": key, "figures": {
            file: {"caption": caption, "text": fig} if isinstance(fig, str) else
            {"caption": caption, "sha256": hashlib.sha256(fig).hexdigest(), "png": base64.b64encode(fig).decode()}
            for file, (fig, caption) in figures.items()}}
        try:
            atomic_write_text(self._path(job), json.dumps(entry))
        except WriteError:
            pass   # a cache that cannot be written only costs the next build its drawing


def job_key(data: str, code: str, job: str) -> str:
    return hashlib.sha256(f"{data}\0{code}\0{job}".encode()).hexdigest()
