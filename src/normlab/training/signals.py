"""Ctrl-C and SIGTERM as a request the loop honours between steps.

An interrupt inside optimizer.step() would leave half-updated weights, so the first SIGINT or
SIGTERM only sets a flag: the loop finishes the step, writes a consistent checkpoint and returns
"interrupted" (the CLI then exits 130, the shell convention for SIGINT). A second one raises
KeyboardInterrupt at once. Outside the main thread (no signal handlers there) it does nothing.
"""
from __future__ import annotations

import signal
import threading

EXIT_INTERRUPTED = 130


class StopOnInterrupt:
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> "StopOnInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False
