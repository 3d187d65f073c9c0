"""Keep mpg123's chatter off stderr while libsndfile decodes MP3.

libsndfile decodes MP3 with libmpg123 and does not set ``MPG123_QUIET``, so a damaged or fake MP3
makes mpg123 print ``Note: Illegal Audio-MPEG-Header ...``, ``Warning: ...`` and
``[src/libmpg123/...] error: ...`` lines straight to file descriptor 2, around mmkit's own one-line
error. Nothing in Python can switch that off, so :func:`mpg123_quiet` points descriptor 2 at a
pipe while MP3 is decoded; a thread copies everything that arrives back to the real stderr at
once, dropping mpg123's lines. Other writers (Python's ``sys.stderr``, progress bars, other
threads) pass through unchanged. Decoders in several threads share one redirection (counted), so
MP3 decoding stays parallel. Where descriptor 2 cannot be redirected, nothing is filtered.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

_MPG123_LINE = re.compile(rb"^(?:Note|Warning): |^\[[^\]\n]*libmpg123/[^\]\n]*\] ")
_DRAIN_TIMEOUT = 2.0  # s; only a child process still holding the pipe could make it wait


def is_mpg123_line(line: bytes) -> bool:
    """Whether one line of stderr output (without its newline) is mpg123's."""
    return _MPG123_LINE.match(line) is not None


def _pump(read_fd: int, out_fd: int) -> None:
    """Copy the pipe to ``out_fd`` until every writer closed it, dropping mpg123's lines."""
    pending = b""
    try:
        while chunk := os.read(read_fd, 65536):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            kept = b"".join(line + b"\n" for line in lines if not is_mpg123_line(line))
            if pending and not is_mpg123_line(pending):  # a partial line: a progress bar redraw
                kept, pending = kept + pending, b""
            if kept:
                _write_all(out_fd, kept)
        if pending and not is_mpg123_line(pending):
            _write_all(out_fd, pending)
    finally:
        os.close(read_fd)
        os.close(out_fd)


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the real stderr is gone: nothing to tell anyone
        while data:
            data = data[os.write(fd, data) :]


class _Redirect:
    """Descriptor 2 -> pipe -> filter thread -> the original stderr, shared by all users."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.active: tuple[int, threading.Thread] | None = None  # (saved fd 2, pump thread)

    def enter(self) -> None:
        with self.lock:
            self.users += 1
            if self.users > 1:
                return
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            try:
                read_fd, write_fd = os.pipe()
            except OSError:
                return
            try:
                saved, out = os.dup(2), os.dup(2)
            except OSError:  # no stderr at all: nothing to protect
                os.close(read_fd)
                os.close(write_fd)
                return
            os.dup2(write_fd, 2)
            os.close(write_fd)
            thread = threading.Thread(
                target=_pump, args=(read_fd, out), name="mmkit-stderr-filter", daemon=True
            )
            thread.start()
            self.active = (saved, thread)

    def exit(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users or self.active is None:
                return
            saved, thread = self.active
            self.active = None
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)  # drops the pipe's last write end: the pump sees the end and stops
            os.close(saved)
            thread.join(_DRAIN_TIMEOUT)  # what was written in the window comes out before more


_REDIRECT = _Redirect()


@contextlib.contextmanager
def mpg123_quiet() -> Iterator[None]:
    """Drop mpg123's stderr lines written inside the block (see the module docstring)."""
    _REDIRECT.enter()
    try:
        yield
    finally:
        _REDIRECT.exit()
