"""The run directory around a training job, shared by every modality's ``train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mmkit.data.store import Store
from mmkit.engine.events import Progress
from mmkit.errors import UserInputError


def start_run(out: str | Path, config: dict[str, Any], *, resume: bool) -> Path:
    """Check ``out`` against ``--resume`` and write the resolved ``config.yaml`` into it."""
    run_dir = Path(out)
    if resume and not (run_dir / "last").is_dir():
        raise UserInputError(f"--resume: {run_dir / 'last'} does not exist")
    if not resume and (run_dir / "last").is_dir():
        raise UserInputError(f"{run_dir} already holds a run; use --resume or another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run_dir


def training_splits(store: Store, dataset: str, progress: Progress) -> tuple[list[int], list[int]]:
    """Train and validation indices; without a validation split, the test (else train) split."""
    train_idx, val_idx = store.indices("train"), store.indices("validation")
    if not train_idx:
        raise UserInputError(f"{dataset}: the train split is empty")
    if not val_idx:
        val_idx = store.indices("test") or train_idx
        progress.message(
            "no validation split; validating on "
            + ("the test split" if store.indices("test") else "the train split")
        )
    return train_idx, val_idx
