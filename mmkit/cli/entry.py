"""The ``mmkit`` console entry point: signal handling first, then the CLI.

Installed before anything heavy is imported, so that Ctrl-C or SIGTERM at any moment of start-up
(importing torch, reading a dataset) ends the process with exit code 130 and one line, never a
traceback or death by signal. During training the trainer takes both signals over to save a
resumable ``last/`` first (:class:`mmkit.engine.trainer.Trainer`).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn

from mmkit.cli.exits import exit_now

INTERRUPTED = 130


def _as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(argv: list[str] | None = None) -> None:
    """``mmkit ...``: the CLI with SIGTERM treated like Ctrl-C. Under ``torchrun`` only rank 0
    prints results (one JSON document with ``--json``); the other ranks keep stderr for errors."""
    signal.signal(signal.SIGTERM, _as_interrupt)
    # a file-size limit (ulimit -f) kills by SIGXFSZ; ignored, the write fails with EFBIG and
    # becomes one line like a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if int(os.environ.get("RANK", "0")) > 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    try:
        from mmkit.cli.main import main

        main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        _exit_interrupted()
    except SystemExit as exc:
        if exc.code == INTERRUPTED:  # Ctrl-C inside a command
            if _by_keyboard_interrupt(exc):  # Typer's exit 130 says nothing; a trainer has
                sys.stderr.write("interrupted\n")
            _exit_interrupted()
        raise


def _by_keyboard_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while handling a KeyboardInterrupt (not a TrainingInterrupted,
    whose message the CLI printed)."""
    from mmkit.errors import MmkitError

    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, MmkitError):
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _exit_interrupted() -> NoReturn:
    """Exit 130 at once. CPython remembers a KeyboardInterrupt that reached C code running
    Python (``PyRun_String``) even when it was caught, and then ends the process by SIGINT
    (status -2) instead of the exit code; ``os._exit`` after flushing gives 130 every time."""
    exit_now(INTERRUPTED)
