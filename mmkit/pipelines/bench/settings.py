"""How big the benchmark runs, and where its generated data is kept."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkit.cache import cache_dir
from mmkit.pipelines.bench.epoch import EpochPlan


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one ``mmkit bench`` run. The defaults take a few minutes on 2 CPU cores;
    :meth:`quick` is a smoke run whose numbers mean little."""

    audio_items: int = 512  # train clips of the epoch data set (8 steps of the default 64)
    video_items: int = 96  # train clips (6 steps of the default 16)
    video_validation_items: int = 16
    mm_items: int = 256  # train images (4 steps of the default 64)
    validation_items: int = 64
    epochs: int = 4  # per fit: the first cold, the last beside a busy process
    ceiling_steps: dict[str, int] = field(default_factory=lambda: {"audio": 4, "video": 2, "mm": 2})
    busy: bool = True
    peer_epochs: int = 1
    open_clip_pairs: int = 9
    cold_start: bool = True
    cold_repeats: int = 3
    growth: bool = True
    growth_rows: int = 128  # train rows of the 1x HF parquet data set (8 s clips: 32 MB)
    growth_seconds: float = 8.0
    growth_factors: tuple[int, ...] = (1, 4, 16)
    growth_backbone: str = "audio_cnn_test"
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # config fields

    def plan(self, modality: str) -> EpochPlan:
        return EpochPlan(self.epochs, self.ceiling_steps.get(modality, 2), self.busy)

    @classmethod
    def quick(cls) -> BenchSettings:
        """Tiny data and test-sized models: checks that every part runs, in about a minute."""
        tiny = {"batch_size": 8, "augment": True}
        return cls(
            audio_items=32,
            video_items=16,
            video_validation_items=4,
            mm_items=16,
            validation_items=8,
            epochs=3,
            ceiling_steps={"audio": 1, "video": 1, "mm": 1},
            open_clip_pairs=1,
            cold_repeats=1,
            growth_rows=4,
            growth_seconds=0.5,
            overrides={
                "audio": {**tiny, "backbone": "audio_cnn_test"},
                "video": {**tiny, "backbone": "video_r3d_test", "frames": 4, "size": 32},
                "mm": {**tiny, "backbone": "clip_lite_test"},
            },
        )


def cached_data(kind: str, params: dict[str, Any], make: Callable[[Path], Any]) -> Path:
    """The generated data set ``kind`` with ``params`` in mmkit's cache (``bench/``), made by
    ``make(folder)`` the first time (into a temporary folder renamed when complete)."""
    digest = hashlib.sha1(json.dumps([kind, params], sort_keys=True).encode()).hexdigest()[:10]
    out = cache_dir() / "bench" / f"{kind}-{digest}"
    if out.is_dir():
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    make(tmp)
    tmp.rename(out)
    return out
