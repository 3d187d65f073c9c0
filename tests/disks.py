"""Disks that fill up and folders that cannot be written, for the robustness tests.

- :func:`run_limited`: ``python -m mmkit ARGS`` under a file-size limit (``ulimit -f``): any file
  it writes past ``limit`` bytes fails, as on a full disk. mmkit itself must ignore the
  ``SIGXFSZ`` such a write sends (else the kernel kills it), so the limit is the only thing the
  child inherits; no bytecode is written, so importing is not what hits it.
- :func:`small_tmpfs`: a real file system of a few hundred KiB (ENOSPC rather than EFBIG), where
  this process may mount one (root with ``CAP_SYS_ADMIN``); the test is skipped elsewhere.
- :func:`read_only`: a folder whose contents stay but cannot change: ``chmod 0o555`` for a normal
  user; for root (whom permissions do not stop) a read-only bind mount of it onto itself, or a
  skip where mounting is not allowed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_limited(
    args: list[str], limit: int, *, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m mmkit ARGS`` with ``RLIMIT_FSIZE`` = ``limit`` bytes."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "mmkit", *args],
        cwd=ROOT,
        env={**os.environ, "MMKIT_DEBUG": "0", "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit_files,
    )


def _mount(*args: str) -> bool:
    try:
        proc = subprocess.run(["mount", *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@contextlib.contextmanager
def small_tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` KiB mounted at ``path`` for the block (skips the test when this
    process cannot mount)."""
    path.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        _unmount(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` (a folder) read-only for this process and its children during the block."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(mode)
        return
    # root ignores permission bits: bind the folder onto itself, then make that mount read-only
    if not _mount("--bind", str(path), str(path)):
        pytest.skip("running as root, where chmod does not stop writes, and mount is refused")
    try:
        if not _mount("-o", "remount,bind,ro", str(path)):
            pytest.skip("running as root, where chmod does not stop writes; remount refused")
        probe = path / ".mmkit-write-probe"
        with contextlib.suppress(OSError):
            probe.write_text("x")
            probe.unlink()
            pytest.skip("the read-only mount still takes writes")
        yield path
    finally:
        _unmount(path)
