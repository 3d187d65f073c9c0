"""Test-wide settings: no network, a throw-away HF cache, and the media fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.forked_cli import ForkedCli

# set before any test module imports `datasets`, which reads them at import time
_HOME = Path(tempfile.mkdtemp(prefix="mmkit-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_HOME / "hf")
os.environ["HF_DATASETS_CACHE"] = str(_HOME / "hf" / "datasets")
os.environ["MMKIT_CACHE"] = str(_HOME / "mmkit")
os.environ["MMKIT_DEBUG"] = "0"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one thread each (CLI subprocesses inherit it)
    os.environ["OMP_NUM_THREADS"] = "1"

_FIXTURES = Path(__file__).parent / "fixtures"
pytest_plugins = [
    f"tests.fixtures.{name}"
    for name in ("speech", "video", "images")
    if (_FIXTURES / f"{name}.py").exists()
]


def run_cli(
    *args: str, timeout: float = 900, cwd: str | Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m mmkit ARGS`` as a whole process (tracebacks off unless ``MMKIT_DEBUG`` is
    passed in ``env``), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "mmkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "MMKIT_DEBUG": "0", **env},
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkedCli]:
    """``mmkit`` commands forked from one server that imported mmkit once, for this test
    module (:class:`tests.forked_cli.ForkedCli`)."""
    runner = ForkedCli(tmp_path_factory.mktemp("forked_cli"))
    yield runner
    runner.close()
