"""Test-wide settings: no network, a throw-away HF cache, and the media fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MMKIT_DEBUG", "0")

_FIXTURES = Path(__file__).parent / "fixtures"
pytest_plugins = [
    f"tests.fixtures.{name}"
    for name in ("speech", "video", "images")
    if (_FIXTURES / f"{name}.py").exists()
]


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("hf_home")
    os.environ["HF_HOME"] = str(home)
    os.environ["HF_DATASETS_CACHE"] = str(home / "datasets")
    os.environ["MMKIT_CACHE"] = str(tmp_path_factory.mktemp("mmkit_cache"))
