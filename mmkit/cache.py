"""Where mmkit keeps what it downloads and prepares: ``$MMKIT_CACHE``, else ``~/.cache/mmkit``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The root of mmkit's cache (prepared stores in ``prepared/``, datasets in ``datasets/``)."""
    return Path(os.environ.get("MMKIT_CACHE", Path.home() / ".cache" / "mmkit"))
