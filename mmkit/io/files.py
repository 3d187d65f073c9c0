"""What a path is, asked before anything opens it: mmkit reads regular files only.

Opening a named pipe (FIFO) blocks until some other process writes to it, which for a user is
forever; a device may never end; a name longer than the file system allows (``ENAMETOOLONG``)
makes ``Path.exists()`` raise instead of answering. :func:`file_problem` says in a few words why
a path cannot be read as a file (or ``None`` when it can), without opening it; decoders put that
reason into their one-line errors, :func:`regular_file` raises it for a named input, and
:func:`path_exists` is ``Path.exists`` that answers ``False`` for any name the system refuses.
Writes go through :func:`writing`, which turns a full disk, a file-size limit or a read-only
folder into one line naming what could not be written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from mmkit.errors import UserInputError

_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not a regular file"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)
_ERRORS = {
    errno.ENOENT: "no such file",
    errno.ENOTDIR: "no such file",  # a parent in the path is a file
    errno.ENAMETOOLONG: "file name too long",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "too many levels of symbolic links",
}


def stat_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``stat(path)`` fails (``"no such file"``, ``"file name too long"``, ...), or ``None``."""
    try:
        os.stat(path)
    except OSError as exc:
        return os_reason(exc)
    except ValueError:  # an embedded NUL character
        return "invalid file name"
    return None


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """``None`` for a regular file (symlinks followed), else why it cannot be read as one:
    ``"no such file"``, ``"is a directory"``, ``"is a named pipe (FIFO), not a regular file"``,
    ``"file name too long"``, ... Never opens the path, so it never blocks."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return os_reason(exc)
    except ValueError:
        return "invalid file name"
    if stat.S_ISREG(mode):
        return None
    return next((text for test, text in _KINDS if test(mode)), "not a regular file")


def os_reason(exc: OSError) -> str:
    """A short lower-case reason for an ``OSError`` (its ``strerror`` when not a known errno)."""
    if exc.errno in _ERRORS:
        return _ERRORS[exc.errno]
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def write_reason(exc: BaseException) -> str | None:
    """Why a write failed, in a few words (``"no space left on device"``, ``"file too large"``,
    ``"read-only file system"``...): an ``OSError``'s reason, or the OS error inside a safetensors
    I/O error; ``None`` when ``exc`` is not a failed write."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):  # mkdir where a file is
            return "a part of the path is a file, not a folder"
        return os_reason(exc)
    found = re.search(r"os error (\d+)", str(exc))
    if type(exc).__name__ == "SafetensorError" and found:
        code = int(found.group(1))
        return os_reason(OSError(code, os.strerror(code)))
    return None


_SHM_WRITE = re.compile(
    r"unable to (?:write to|resize|mmap|open)[^<]*<[^>]*torch_[^>]*>.*?\((\d+)\)"
)


def shared_memory_reason(exc: BaseException) -> str | None:
    """Why a DataLoader worker could not hand a batch over through shared memory (torch's
    ``RuntimeError``: ``unable to write to file </torch_...>: No space left on device (28)``,
    or a worker killed by ``SIGBUS`` on a full ``/dev/shm``), in a few words; ``None`` for any
    other error."""
    if not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    found = _SHM_WRITE.search(text)
    if found is not None:
        code = int(found.group(1))
        return os_reason(OSError(code, os.strerror(code)))
    if "out of shared memory" in text:
        return "a worker was killed by SIGBUS (shared memory full)"
    return None


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Inside the block, a failed write (:func:`write_reason`) becomes one
    :class:`UserInputError`: ``cannot write <what> <path>: <reason>``."""
    try:
        yield
    except Exception as exc:
        reason = write_reason(exc)
        if reason is None:
            raise
        raise UserInputError(f"cannot write {what} {short_path(path)}: {reason}") from exc


def path_exists(path: str | os.PathLike[str]) -> bool:
    """``Path.exists`` that answers ``False`` (instead of raising) for a name the system refuses,
    such as one longer than the file system allows."""
    return stat_problem(path) is None


def link_out_of(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """Why ``path`` must not be read as part of the dataset folder ``root``: a symbolic link
    below ``root`` (the file, or a folder on the way to it) leads out of it; ``None`` otherwise.
    A path outside ``root`` as written (absolute, or ``../``) is the writer's choice and
    answers ``None``: only links, which a listing does not show, are refused."""
    try:
        where, top = os.path.abspath(path), os.path.abspath(root)
        if os.path.commonpath([where, top]) != top:
            return None
        real, real_top = os.path.realpath(where), os.path.realpath(top)
    except (OSError, ValueError):  # a name the system refuses: reading it says why
        return None
    if os.path.commonpath([real, real_top]) == real_top:
        return None
    return f"a symbolic link out of the dataset folder (to {short_path(real, 80)})"


def short_path(path: str | os.PathLike[str], limit: int = 160) -> str:
    """``path`` for a one-line message: a very long one keeps its end (the file name)."""
    text = os.fspath(path)
    return text if len(text) <= limit else f"...{text[-limit:]}"


def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if it is a regular file (FIFOs, devices and folders are refused: reading a FIFO
    blocks forever); raises :class:`UserInputError` naming ``what`` otherwise."""
    path = Path(path)
    problem = file_problem(path)
    if problem is None:
        return path
    if problem.startswith("is "):  # it exists, but is a folder, a FIFO, a device...
        raise UserInputError(f"{what}: {short_path(path, 120)} {problem}")
    raise UserInputError(f"{what}: {problem}: {short_path(path, 120)}")


def read_text(path: str | os.PathLike[str], what: str) -> str:
    """The text of a small data file (a manifest, a caption or split list) as UTF-8, a leading
    byte-order mark (as Excel writes) dropped; one-line :class:`UserInputError` when ``path`` is
    not a readable regular file or not UTF-8."""
    path = regular_file(path, what)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"{what} {short_path(path)} is not UTF-8 text (byte {exc.start})"
        ) from None
    except OSError as exc:
        raise UserInputError(f"cannot read {what} {short_path(path)}: {os_reason(exc)}") from None
