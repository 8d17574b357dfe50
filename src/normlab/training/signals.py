"""Ctrl-C and SIGTERM as a request the loop honours between steps.

An interrupt inside optimizer.step() would leave half-updated weights, so the first SIGINT or
SIGTERM only sets a flag: the loop finishes the step, writes a consistent checkpoint and returns
"interrupted" (the CLI then exits 130, the shell convention for SIGINT). A second one raises
KeyboardInterrupt at once. Outside the main thread (no signal handlers there) it does nothing.

A launcher can also ask for the stop without a signal (`request_stop`, e.g. from a thread watching a Ray stop
flag): the loop honours it like a first Ctrl-C, and a signal that follows still counts as the first, so a stop
asked for twice (the flag and Ray's own cancel) never aborts a run before its checkpoint.
"""
from __future__ import annotations

import signal
import threading

EXIT_INTERRUPTED = 130

_asked = threading.Event()   # process-wide: a worker trains one task at a time


def request_stop() -> None:
    """Ask the running loop (or the next one this process starts) to stop after its step, as a first Ctrl-C would."""
    _asked.set()


def clear_stop_request() -> None:
    """Forget a request_stop: the next task of a reused worker process trains."""
    _asked.clear()


class StopOnInterrupt:
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signalled = False
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signalled or _asked.is_set()

    def __enter__(self) -> "StopOnInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signalled:
            raise KeyboardInterrupt
        self.signalled = True

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False
