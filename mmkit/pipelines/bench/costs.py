"""Costs measured on whole processes: cold start, and how prepare and an epoch grow.

Each measurement is a real ``mmkit`` command in a child process (the same code, found through
``PYTHONPATH``); its wall time and its peak resident memory come from ``wait4``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmkit.events import Progress
from mmkit.pipelines.bench.datagen import scaled_view
from mmkit.pipelines.bench.timing import median, run_child, slope

IMPORT_TORCH = "import torch, torchaudio"
GROWTH_KEYS = ("prepare_seconds", "prepare_peak_rss_mb", "epoch_seconds", "epoch_peak_rss_mb")


def cold_start(checkpoint: Path, media: Path, repeats: int) -> dict[str, Any]:
    """Wall seconds of ``python -c "import torch, torchaudio"``, ``mmkit --help`` and
    ``mmkit audio infer <one file> --checkpoint RUN --json``, each the median of ``repeats``
    runs taken in turns."""
    python = sys.executable
    commands = {
        "import_torch": [python, "-c", IMPORT_TORCH],
        "help": [python, "-m", "mmkit", "--help"],
        "infer": [python, "-m", "mmkit", "audio", "infer", str(media), "-k", str(checkpoint)],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            seconds[name].append(run_child(cmd).seconds)
    wall = {name: round(median(values), 3) for name, values in seconds.items()}
    return {
        "seconds": {f"{name}_process": value for name, value in wall.items()},
        "ratios": {
            "help_over_import_torch": round(wall["help"] / wall["import_torch"], 3),
            "infer_over_import_torch": round(wall["infer"] / wall["import_torch"], 3),
        },
    }


def growth(
    shards: Path,
    rows: int,
    factors: Sequence[int],
    workdir: Path,
    *,
    backbone: str,
    progress: Progress,
) -> dict[str, Any]:
    """``mmkit audio prepare`` of the HF parquet dataset made of the first ``factor`` shards
    (``rows`` train rows each), then ``mmkit audio train --epochs 1`` on that store, for each
    factor: wall seconds and peak RSS, their slopes per 1000 train items and the ratios of the
    largest size to the smallest."""
    points = []
    for factor in factors:
        progress.message(f"audio: prepare and one epoch at {factor}x ({factor * rows} items)")
        view = scaled_view(shards, workdir / f"x{factor}", factor)
        store, run = workdir / f"x{factor}-store", workdir / f"x{factor}-run"
        mmkit = [sys.executable, "-m", "mmkit", "audio"]
        prep = run_child([*mmkit, "prepare", "-d", str(view), "-o", str(store), "--json"])
        train = [*mmkit, "train", "-d", str(store), "-o", str(run), "--epochs", "1"]
        epoch = run_child([*train, "--backbone", backbone, "--logger", "none", "--json"])
        points.append(
            {
                "factor": factor,
                "items": factor * rows,
                "prepare_seconds": round(prep.seconds, 3),
                "prepare_peak_rss_mb": round(prep.peak_rss_mb, 1),
                "epoch_seconds": round(epoch.seconds, 3),
                "epoch_peak_rss_mb": round(epoch.peak_rss_mb, 1),
            }
        )
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
    items = [p["items"] / 1000 for p in points]
    first, last = points[0], points[-1]
    tag = f"{last['factor']}x_over_{first['factor']}x"
    return {
        "points": points,
        "slopes_per_1000_items": {
            key: round(slope(items, [p[key] for p in points]), 3) for key in GROWTH_KEYS
        },
        "ratios": {
            f"{key.replace('_peak_rss_mb', '_rss')}_{tag}": round(last[key] / first[key], 3)
            for key in GROWTH_KEYS
        },
    }
