"""Ctrl-C / SIGTERM during training: stop at a step boundary so ``last/`` is consistent."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopOnSignal:
    """While entered, the first SIGINT/SIGTERM sets :attr:`requested` (the loop stops at the
    next step boundary and saves ``last/``); a second one interrupts at once. The previous
    handlers come back on exit. Off the main thread (where Python allows no handlers) it only
    holds the flag."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()
