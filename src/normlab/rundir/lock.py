"""One writer per run directory: an exclusive advisory lock on <run>/.lock, held while training.

flock is released by the kernel when the holder dies (even by kill -9), so a stale lock never
blocks a resume; a second writer is refused with the pid that holds the lock. POSIX only (fcntl).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..config import ConfigError


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
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
            raise ConfigError(f"{self.path.parent} is being written by another normlab process (pid {holder}); "
                              "wait for it to finish or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> bool:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        return False
