"""Files put into the local Hugging Face hub cache as if downloaded, for offline tests.

:func:`cache_hub_files` writes the cache layout ``huggingface_hub`` reads with
``HF_HUB_OFFLINE=1`` (``models--ORG--REPO/refs/main`` naming a snapshot folder that holds the
files), so ``hf_hub_download(repo, filename)`` finds them without the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path


def cache_hub_files(
    repo: str, files: Mapping[str, bytes | str], cache_dir: str | Path | None = None
) -> Path:
    """Write ``files`` (``{filename: content}``) as hub model repo ``repo``'s ``main`` snapshot
    in ``cache_dir`` (default: ``huggingface_hub``'s cache, ``$HF_HOME/hub``); returns the
    snapshot folder."""
    from huggingface_hub import constants

    root = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repo.encode()).hexdigest()
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (snapshot / name).write_bytes(data)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return snapshot
