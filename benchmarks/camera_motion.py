"""Held-out-source protocol for ``mmkit video train``: do the defaults generalise to camera motion
in footage, containers, codecs and frame sizes never seen in training?

Train with the given recipe on the training folder (240 clips cut from 10 source "videos", h264
96x96; no split, so mmkit carves its own validation set, as from a user's folder) and score the
best checkpoint with ``mmkit.pipelines.video.evaluate(..., split="all")`` on EVERY clip of the
test set (60 clips cut from 6 OTHER sources, in webm/vp9, avi/mpeg4, mkv/h264, mov/h264,
mp4/h265 and avi/mjpeg at 97x61 to 320x240; see ``camera_motion_data.py``). Accuracy and
macro-F1 per seed, then mean, std, min and max.

    python -m benchmarks.camera_motion [--seeds 0 1 2] [--epochs N] [--json] [--data DIR]
                                       [--set key=value ...] [--train-source folder|manifest]

``--set`` overrides a key of ``VideoConfig`` (dotted for nested dicts, values in YAML), e.g.
``--set backbone_kwargs.widths=[32,64,128]``. ``--train-source manifest`` trains from
``train.csv``, whose ``group`` column names each clip's source, so mmkit carves validation by
whole sources. ``--trace`` is a diagnostic, not the protocol: the test clips become the
validation split and early stopping is off, so ``metrics.jsonl`` holds the held-out accuracy
of every epoch. Data is cached under ``--data`` (default ``~/.cache/mmkit/bench/camera_motion``);
``plain_video_baseline.py`` runs the same protocol for a plain PyTorch 3D-CNN.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmarks.camera_motion_data import CameraData, DataSpec, ensure_data
from benchmarks.protocol import base_parser, breakdown, code_version, run_seeds, summarize

DEFAULT_DATA = Path("~/.cache/mmkit/bench/camera_motion")

# (data, seed, epochs or None for the recipe's default, run dir) -> one seed's result
Recipe = Callable[[CameraData, int, "int | None", Path], dict[str, Any]]


def protocol_parser(description: str) -> argparse.ArgumentParser:
    """The options every recipe of the protocol shares."""
    parser = base_parser(description, DEFAULT_DATA)
    parser.add_argument("--train-per-class", type=int, default=DataSpec.train_per_class)
    parser.add_argument("--test-per-class", type=int, default=DataSpec.test_per_class)
    return parser


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b.c=[2, 3]"]`` -> ``{"a": 1, "b": {"c": [2, 3]}}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(text)
    return out


def data_spec(args: argparse.Namespace) -> DataSpec:
    return DataSpec(train_per_class=args.train_per_class, test_per_class=args.test_per_class)


def run_protocol(
    recipe: Recipe, args: argparse.Namespace, *, name: str, settings: dict[str, Any]
) -> dict[str, Any]:
    """Run ``recipe`` for every seed; the protocol report (see RESULTS-video.md)."""
    import torch

    torch.set_num_threads(max(1, args.threads))
    code = code_version()
    spec = data_spec(args)
    data = ensure_data(args.data, spec)
    out = args.out or Path(tempfile.mkdtemp(prefix="mmkit-camera-motion-"))
    seeds = run_seeds(
        lambda seed: recipe(data, seed, args.epochs, out / f"seed{seed}"),
        args.seeds,
        data.test_files,
        name,
    )
    return {
        "recipe": name,
        "code": code,
        "settings": settings,
        "epochs": args.epochs,
        "seeds": list(args.seeds),
        "data": {
            "dir": str(data.root),
            "train_files": data.train_files,
            "test_files": data.test_files,
        },
        "num_samples": data.test_files,
        "accuracy": summarize([s["accuracy"] for s in seeds]),
        "macro_f1": summarize([s["macro_f1"] for s in seeds]),
        "per_seed": seeds,
    }


def print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    acc, f1 = report["accuracy"], report["macro_f1"]
    print(f"recipe: {report['recipe']} {json.dumps(report['settings'])} epochs={report['epochs']}")
    print("| accuracy mean ± std | macro-F1 mean ± std | per seed (acc) | per seed (F1) | n |")
    print("|---|---|---|---|---|")
    per_acc = " / ".join(f"{s['accuracy']:.3f}" for s in report["per_seed"])
    per_f1 = " / ".join(f"{s['macro_f1']:.3f}" for s in report["per_seed"])
    print(
        f"| {acc['mean']:.3f} ± {acc['std']:.3f} | {f1['mean']:.3f} ± {f1['std']:.3f} | "
        f"{per_acc} | {per_f1} | {report['num_samples']} |"
    )


def trace_manifest(data: CameraData) -> Path:
    """Training clips as ``train`` and test clips as ``validation`` (diagnostic only)."""
    path = data.root / "trace.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=("path", "label", "split"))
        writer.writeheader()
        for split, rows in (("train", data.rows("train")), ("validation", data.rows("test"))):
            writer.writerows({"path": r["path"], "label": r["label"], "split": split} for r in rows)
    return path


def mmkit_recipe(overrides: dict[str, Any], train_source: str, trace: bool = False) -> Recipe:
    """``mmkit video train`` with its defaults (plus ``overrides``), scored by ``evaluate``."""

    def run(data: CameraData, seed: int, epochs: int | None, run_dir: Path) -> dict[str, Any]:
        from mmkit.config import build_config
        from mmkit.pipelines import video

        dataset = {"folder": data.train_dir, "manifest": data.train_manifest}[train_source]
        flags: dict[str, Any] = {"dataset": str(dataset), "out": str(run_dir), "seed": seed}
        if trace:
            flags.update(dataset=str(trace_manifest(data)), patience=0)
        if epochs is not None:
            flags["epochs"] = epochs
        cfg = build_config(video.VideoConfig, None, {**overrides, **flags})
        result = video.train(cfg)
        test_cfg = video.VideoConfig(dataset=str(data.test_manifest))
        report, last = (
            video.evaluate(str(ckpt), test_cfg, split="all")
            for ckpt in (result.best_checkpoint, result.last_checkpoint)
        )
        best = json.loads((Path(result.best_checkpoint) / "config.json").read_text())
        rows = data.rows("test")
        top = video.infer([str(data.root / r["path"]) for r in rows], str(result.best_checkpoint))
        hits = [t["top_k"][0]["label"] == r["label"] for t, r in zip(top, rows, strict=True)]
        out = {
            "accuracy": round(report["accuracy"], 4),
            "macro_f1": round(report["macro_f1"], 4),
            "num_samples": report["num_samples"],
            "val_accuracy": round(result.best_metric.get("accuracy", float("nan")), 4),
            "best_epoch": best["epoch"],  # the epoch the trainer chose on validation
            "epochs_run": result.epochs,
            # the final weights, for judging model selection (the protocol scores the best)
            "last_accuracy": round(last["accuracy"], 4),
            "last_macro_f1": round(last["macro_f1"], 4),
            "last_num_samples": last["num_samples"],
            "per_format": breakdown(rows, hits, "format"),
            "per_source": breakdown(rows, hits, "group"),
        }
        if trace:
            out["trace"] = [round(r["val_accuracy"], 3) for r in result.history]
        return out

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = protocol_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--train-source", choices=("folder", "manifest"), default="folder")
    parser.add_argument("--trace", action="store_true", help="diagnostic: validate on the test")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    settings = dict(overrides, train_source=args.train_source, trace=args.trace)
    recipe = mmkit_recipe(overrides, args.train_source, args.trace)
    report = run_protocol(recipe, args, name="mmkit", settings=settings)
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
