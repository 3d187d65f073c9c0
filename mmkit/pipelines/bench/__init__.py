"""``mmkit bench``: what users wait for, measured in one run against what they would otherwise do.

For each modality, on data it generates (real encoded files, cached in ``$MMKIT_CACHE/bench``):

1. ``epoch_over_ceiling``: a real training epoch of the default recipe through the Trainer
   (store -> DataLoader with the default workers -> preprocessing on the device -> step, with
   progress, metrics and checkpoints) in items/s, over the same model stepping on a synthetic
   batch already on the device (:mod:`~mmkit.pipelines.bench.epoch`). The last epoch runs beside
   one busy process: ``busy_over_alone_epoch_seconds``.
2. Against the peer path (:mod:`~mmkit.pipelines.bench.peers`), run as a user's script runs
   (torch's own thread settings): audio ``epoch_over_per_sample_loader``; video
   ``store_build_over_ffmpeg``; image-text ``step_over_open_clip_loop``. ``*_mmkit_threads``
   ratios give the peer mmkit's settings.
   The loader alone (:mod:`~mmkit.pipelines.bench.loader`), every modality:
   ``loader_over_gpu_step`` (against one H100's model step) and ``loader_over_redecode_loader``
   (against the same loader decoding every file again).
3. Cold start (audio): ``help_over_import_torch``, ``infer_over_import_torch``, whole processes.
4. Growth (audio): ``prepare`` and one epoch of an HF parquet data set at 1x, 4x, 16x: peak RSS
   and seconds, their slopes, ``prepare_rss_16x_over_1x``.
5. ``--scale`` (:mod:`~mmkit.pipelines.bench.scale`): real-size Speech Commands, UCF101 and COCO
   captions at 1/64 to 1: prepare, an epoch, eval and infer as whole processes.

Each ratio has a target (:data:`TARGETS`); the report says which are met. Absolute numbers
depend on the machine and its load (reported); ratios measured in the same run are what count.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from mmkit.errors import UserInputError
from mmkit.events import NullProgress, Progress
from mmkit.pipelines.bench.settings import BenchSettings

__all__ = ["MODALITIES", "TARGETS", "BenchSettings", "run_bench"]

MODALITIES = ("audio", "video", "mm")

# ratio -> (comparison, value); epoch_over_ceiling is 0.80 on a GPU
TARGETS: dict[str, tuple[str, float]] = {
    "epoch_over_ceiling": (">=", 0.90),
    "busy_over_alone_epoch_seconds": ("<=", 2.5),
    "epoch_over_per_sample_loader": (">=", 3.0),
    "loader_over_gpu_step": (">=", 1.0),
    "loader_over_redecode_loader": (">=", 10.0),
    "store_build_over_ffmpeg": (">=", 0.75),
    "step_over_open_clip_loop": (">=", 0.95),
    "help_over_import_torch": ("<=", 0.25),
    "infer_over_import_torch": ("<=", 1.5),
    "prepare_rss_16x_over_1x": ("<=", 1.5),
}
GPU_TARGETS = {"epoch_over_ceiling": (">=", 0.80)}


def targets_for(device: str) -> dict[str, tuple[str, float]]:
    return {**TARGETS, **(GPU_TARGETS if device.startswith("cuda") else {})}


def judge(
    ratios: dict[str, float], device: str, targets: dict[str, tuple[str, float]] | None = None
) -> dict[str, Any]:
    """``targets`` (as text) and ``met`` for each ratio that has a target (by default those of
    :data:`TARGETS` for ``device``)."""
    targets = targets_for(device) if targets is None else targets
    shown, met = {}, {}
    for name, value in ratios.items():
        if name in targets:
            op, bound = targets[name]
            shown[name] = f"{op} {bound:g}"
            met[name] = value >= bound if op == ">=" else value <= bound
    return {"targets": shown, "met": met}


def machine(device: str) -> dict[str, Any]:
    import torch

    from mmkit.engine.placement import loader_workers

    return {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "default_num_workers": loader_workers(None),
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
    }


def run_bench(
    modalities: list[str] | None = None,
    device: str = "auto",
    settings: BenchSettings | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the benchmarks of ``modalities`` (default: all) on ``device``; see the module
    docstring for what each number is."""
    from mmkit.engine.placement import resolve_device
    from mmkit.pipelines.bench.suites import SUITES
    from mmkit.pipelines.bench.timing import load_average

    names = list(dict.fromkeys(modalities or MODALITIES))
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise UserInputError(f"no benchmark for {unknown}; available: {', '.join(SUITES)}")
    settings = settings or BenchSettings()
    progress = progress or NullProgress()
    dev = str(resolve_device(device))
    report: dict[str, Any] = {"machine": machine(dev), "load_average": {"before": load_average()}}
    results = {}
    with tempfile.TemporaryDirectory(prefix="mmkit-bench-") as tmp:
        for name in names:
            workdir = Path(tmp) / name
            workdir.mkdir()
            result = SUITES[name](settings, dev, workdir, progress)
            verdict = judge(result["ratios"], dev)
            results[name] = {"modality": name, "device": dev, **result, **verdict}
    report["load_average"]["after"] = load_average()
    report["results"] = results
    report["all_targets_met"] = all(all(r["met"].values()) for r in results.values())
    return report
