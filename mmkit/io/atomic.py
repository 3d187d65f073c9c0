"""Directory and file replacement that a kill at any instant cannot half-do.

A directory (a checkpoint, a prepared store) is written into a temporary sibling and swapped in
with two renames: ``dst -> .dst.old`` then ``tmp -> dst``. A kill between the two leaves no
``dst`` but a complete ``.dst.old``; :func:`recover_dir` (run before anything reads ``dst``)
and the next :func:`replace_dir` put it back instead of deleting it. Temporary siblings left by a
kill during the write (``.dst.<random>``) are incomplete by construction and are removed.
A writer that can continue after a kill (a prepared store) works in the stable sibling
``.dst.partial`` instead (:func:`partial_dir_for`), which these never remove, under an exclusive
lock (:func:`hold_lock`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
from pathlib import Path

from mmkit.errors import UserInputError
from mmkit.io.files import writing

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the mode a plain open() would give a new file


def old_of(dst: Path) -> Path:
    """Where :func:`replace_dir` parks the previous ``dst`` during a swap."""
    return dst.with_name(f".{dst.name}.old")


def temp_dir_for(dst: Path) -> Path:
    """A fresh temporary sibling of ``dst`` to write the new version into."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))


def partial_dir_for(dst: Path) -> Path:
    """The stable sibling where a resumable writer of ``dst`` keeps its committed work."""
    return dst.with_name(f".{dst.name}.partial")


def hold_lock(path: Path, what: str) -> int:
    """An exclusive ``flock`` on ``path`` (created when missing), as an open descriptor: close
    it to release (the kernel does when the process dies). A lock already held raises a
    one-line :class:`~mmkit.errors.UserInputError` naming ``what`` and the holder."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise UserInputError(f"{what} is in use by {holder}; wait for it to finish") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
    return fd


def recover_dir(dst: Path) -> bool:
    """Undo a swap that a kill interrupted and drop abandoned temporary siblings.

    Returns True when ``dst`` was restored from ``.dst.old``."""
    dst = Path(dst)
    old = old_of(dst)
    restored = False
    if old.is_dir():
        if dst.exists():
            shutil.rmtree(old, ignore_errors=True)  # the swap finished; only cleanup was lost
        else:
            os.replace(old, dst)
            restored = True
    if dst.parent.is_dir():
        for leftover in dst.parent.glob(f".{dst.name}.tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    return restored


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished ``src`` to ``dst``, replacing any old ``dst`` (never a half copy)."""
    src, dst = Path(src), Path(dst)
    old = old_of(dst)
    if old.exists():
        if dst.exists():
            shutil.rmtree(old)
        else:  # an earlier swap was killed between its renames: old is the real dst
            os.replace(old, dst)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def write_bytes_atomic(path: Path, data: bytes, what: str = "file") -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename: a kill or a full disk
    leaves the previous ``path`` (or none), never part of the new one. A failed write is one
    line (:func:`~mmkit.io.files.writing`)."""
    path = Path(path)
    with writing(path, what):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_text_atomic(path: Path, text: str, what: str = "file") -> None:
    """Write ``text`` (UTF-8) to ``path`` as :func:`write_bytes_atomic` does."""
    write_bytes_atomic(path, text.encode("utf-8"), what)
