"""``mmkit demo``: train, evaluate and infer on the small data sets embedded in ``examples/``.

Each part reads its experiment file (``examples/<modality>/demo.yaml``), trains into
``<out>/<modality>``, evaluates on the held-out split and runs inference on a few held-out files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkit.config import build_config
from mmkit.errors import UserInputError
from mmkit.events import Progress


def examples_dir() -> Path:
    """``examples/`` of the source checkout mmkit runs from."""
    here = Path(__file__).resolve().parents[2] / "examples"
    if not here.is_dir():
        raise UserInputError(
            "the demo needs the repository's examples/ folder (install mmkit from a checkout)"
        )
    return here


@dataclass
class DemoPart:
    modality: str
    run: Callable[[Path, Path, Progress], dict[str, Any]]


def _classification(module: str, config_class: str, pattern: str) -> Callable[..., dict]:
    """A demo part for a classification modality: train, evaluate on test, infer a few files."""

    def run(example: Path, out: Path, progress: Progress) -> dict[str, Any]:
        import importlib

        pipeline = importlib.import_module(module)
        cfg = build_config(
            getattr(pipeline, config_class),
            example / "demo.yaml",
            {"dataset": str(example / "data"), "out": str(out)},
        )
        result = pipeline.train(cfg, progress=progress)
        metrics = pipeline.evaluate(str(out), cfg, split="test", progress=progress)
        test_files = sorted((example / "data" / "test").rglob(pattern))[::7][:4]
        predictions = pipeline.infer([str(f) for f in test_files], str(out), k=1)
        return {
            "run_dir": str(out),
            "best_checkpoint": str(result.best_checkpoint),
            "curves": str(out / "curves.png"),
            "test_accuracy": metrics["accuracy"],
            "test_macro_f1": metrics["macro_f1"],
            "confusion_png": metrics["confusion_png"],
            "predictions": [_prediction(p) for p in predictions],
        }

    return run


def _prediction(result: dict[str, Any]) -> dict[str, str]:
    """Predicted top-1 beside the truth (the demo sets keep the label as the parent folder)."""
    path = Path(result["path"])
    return {"path": str(path), "predicted": result["top_k"][0]["label"], "truth": path.parent.name}


def _mm(example: Path, out: Path, progress: Progress) -> dict[str, Any]:
    """CLIP-lite on captioned scenes: retrieval + zero-shot on held-out images, and ``sim``."""
    import csv

    from mmkit.pipelines import mm

    manifest = example / "data" / "captions.csv"
    cfg = build_config(
        mm.MMConfig, example / "demo.yaml", {"dataset": str(manifest), "out": str(out)}
    )
    result = mm.train(cfg, progress=progress)
    metrics = mm.evaluate(str(out), cfg, split="test", progress=progress)
    with open(manifest, newline="", encoding="utf-8") as f:
        test = [row for row in csv.DictReader(f) if row["split"] == "test"]
    image, truth, label = test[0]["image"], test[0]["caption"], test[0]["label"]
    others = [row["caption"] for row in test[1::7] if row["label"] != label][:4]  # all false
    ranking = mm.sim([str(manifest.parent / image)], [truth, *others], str(out))
    return {
        "run_dir": str(out),
        "best_checkpoint": str(result.best_checkpoint),
        "curves": str(out / "curves.png"),
        "test_image_to_text": metrics["image_to_text"],
        "test_text_to_image": metrics["text_to_image"],
        "test_zero_shot_accuracy": metrics.get("zero_shot_accuracy"),
        "predictions": [
            f"{ranking['image']} (truth: {truth!r})",
            *(
                f"{s['similarity']:+.3f} {s['probability']:.3f} {s['text']}"
                for s in ranking["scores"]
            ),
        ],
    }


PARTS = [
    DemoPart("audio", _classification("mmkit.pipelines.audio", "AudioConfig", "*.flac")),
    DemoPart("video", _classification("mmkit.pipelines.video", "VideoConfig", "*.mp4")),
]
PARTS.append(DemoPart("mm", _mm))


def run_demo(out: str | Path, progress: Progress, modalities: list[str] | None = None) -> dict:
    """Run every demo part (or the named ones) and return a summary per modality."""
    root = examples_dir()
    out = Path(out)
    wanted = [p for p in PARTS if modalities is None or p.modality in modalities]
    if not wanted:
        names = ", ".join(p.modality for p in PARTS)
        raise UserInputError(f"no demo part among {modalities}; available: {names}")
    summary = {}
    for part in wanted:
        run_dir = out / part.modality
        if run_dir.exists():
            shutil.rmtree(run_dir)
        progress.message(f"demo: {part.modality}")
        summary[part.modality] = part.run(root / part.modality, run_dir, progress)
    return summary
