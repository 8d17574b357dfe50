"""One writer per run directory: an exclusive advisory lock on <run>/.lock, held while training.

flock is released by the kernel when the holder dies (even by kill -9), so a stale lock never
blocks a resume; a second writer is refused with the pid that holds the lock. POSIX only (fcntl).
A command refused before it wrote a run (bad data, a folder of someone else's files) takes back
the .lock file, and the folder, that it created: nothing is left behind.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..config import ConfigError

RUN_FILES = ("config.yaml", "metrics.jsonl", "meta.json", "summary.json")  # any of them: the folder holds a run


class LockHeld(ConfigError):
    """Another process holds the lock: this one may write nothing into that folder."""


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None
        self._created: list[Path] = []

    def __enter__(self) -> "RunLock":
        self._created = [p for p in (*reversed(self.path.parent.parents), self.path.parent, self.path)
                         if not p.exists() and not p.is_symlink()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"cannot create {self.path}: {err.strerror or err} (is the run directory writable?)") \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld(f"{self.path.parent} is being written by another normlab process (pid {holder}); "
                              "wait for it to finish or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> bool:
        if self._fd is not None:
            if self.path in self._created and not any((self.path.parent / f).exists() for f in RUN_FILES):
                self._take_back()  # still holding the lock: no other writer can be inside this folder
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        return False

    def _take_back(self) -> None:
        """Remove the .lock file and the (now empty) folders this lock created."""
        self.path.unlink(missing_ok=True)
        for folder in reversed([p for p in self._created if p != self.path]):
            try:
                folder.rmdir()
            except OSError:  # not empty (something else was written there) or already gone
                break
