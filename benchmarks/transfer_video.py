"""Video transfer protocol for ``--pretrained``: does a network pretrained on some camera motions
learn a small, different motion task better than one trained from scratch?

Data: the camera-motion clips of ``camera_motion_data.py`` (a virtual camera over footage of many
kinds; training sources vs held-out test sources in other containers, codecs and sizes).

- Pretraining: ``mmkit video train`` with its defaults (``video_r3d``) on the four translations
  ``pan_left`` / ``pan_right`` / ``tilt_up`` / ``tilt_down``, 40 clips each from the 10 training
  sources (the camera-motion protocol's very clips of those labels), once. Its best checkpoint
  is scored on 10 clips per translation from the 6 held-out sources: a check that it learned.
- The new task: ``zoom_in`` / ``zoom_out`` / ``roll_cw`` / ``roll_ccw`` (the camera moves along
  or turns about its optical axis: motions the pretraining never saw). For each size (5 and 20
  clips per class, the first of each class's clips, which spread over the training sources; all
  marked ``train`` in a manifest with the source as group, so mmkit carves its own validation
  from them, whole sources at a time, as it does for a user's data) and seed, three ways:

  - ``scratch``: the defaults from random weights;
  - ``finetune``: ``--pretrained <pretrain run>/best`` (the whole network trains, new head);
  - ``freeze``: the same ``+ --freeze backbone`` (a linear probe, BatchNorm frozen).

  Each run's best checkpoint is scored with ``video.evaluate(..., split="all")`` on EVERY clip
  of the new task's test set: 24 per class from the 6 held-out sources, 24-48 frames, in the 6
  test formats; a result that did not score every clip is refused. Its final weights are scored
  too (``last_accuracy``), a diagnostic of model selection.

    python -m benchmarks.transfer_video [--seeds 0 1 2] [--shots 5 20] [--modes ...] [--json]
        [--set key=value ...] [--pretrain-set key=value ...] [--pretrain-run DIR] [--trace]

``--set`` items go to every fine-tuning run (``--set backbone_lr_scale=0.1``), ``--pretrain-set``
to the pretraining run only; ``--pretrain-run`` reuses an earlier pretraining run (its ``best/``).
``--trace`` is a diagnostic, not the protocol: the test clips become the validation split and
early stopping is off, so ``trace`` holds the held-out accuracy of every epoch. Data is cached
under ``--data`` (default ``~/.cache/mmkit/bench/transfer_video``). Accuracy and macro-F1 per
seed, then mean, std, min and max.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.camera_motion_data import TEST_SOURCES, CameraData, DataSpec, ensure_data
from benchmarks.protocol import base_parser, code_version, print_transfer, transfer_rows
from benchmarks.transfer import MODES, mode_flags

DEFAULT_DATA = Path("~/.cache/mmkit/bench/transfer_video")
PRETRAIN_LABELS = ("pan_left", "pan_right", "tilt_up", "tilt_down")
TASK_LABELS = ("zoom_in", "zoom_out", "roll_cw", "roll_ccw")


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0], DEFAULT_DATA)
    p.add_argument("--shots", type=int, nargs="+", default=[5, 20])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--pretrain-run", type=Path, default=None, help="reuse this pretraining run")
    p.add_argument("--trace", action="store_true", help="diagnostic: validate on the test")
    sizes = p.add_argument_group("data sizes (tests)")
    sizes.add_argument("--pretrain-per-class", type=int, default=40)
    sizes.add_argument("--task-per-class", type=int, default=20, help="new task's clips to draw on")
    sizes.add_argument("--test-per-class", type=int, default=24, help="new task, per class")
    sizes.add_argument("--pretrain-test-per-class", type=int, default=10)
    sizes.add_argument("--source-scale", type=float, default=1.0, help="< 1: smaller footage")
    return p


def specs(args: argparse.Namespace) -> tuple[DataSpec, DataSpec]:
    """The pretraining data and the new task's."""
    scale = args.source_scale
    pretrain = DataSpec(
        train_per_class=args.pretrain_per_class,
        test_per_class=args.pretrain_test_per_class,
        source_scale=scale,
        labels=PRETRAIN_LABELS,
    )
    task = DataSpec(
        train_per_class=max(args.task_per_class, *args.shots),  # one cache for every --shots
        test_per_class=args.test_per_class,
        source_scale=scale,
        labels=TASK_LABELS,
    )
    return pretrain, task


def write_manifest(data: CameraData, shots: int, trace: bool = False) -> Path:
    """The first ``shots`` training clips of each class, all ``train`` with their source as
    group; ``trace`` adds every test clip as ``validation`` (diagnostic only)."""
    rows, taken = [], dict.fromkeys(data.spec.labels, 0)
    for r in data.rows("train"):
        if taken[r["label"]] < shots:
            taken[r["label"]] += 1
            rows.append({**r, "split": "train"})
    if trace:
        rows += [{**r, "split": "validation"} for r in data.rows("test")]
    path = data.root / f"finetune-{shots}{'-trace' if trace else ''}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=("path", "label", "split", "group"))
        writer.writeheader()
        writer.writerows({k: r[k] for k in writer.fieldnames} for r in rows)
    return path


def train(dataset: Path, out: Path, flags: dict[str, Any], sets: Sequence[str]) -> Any:
    """One ``video.train`` run (its ``TrainResult``)."""
    from mmkit.config import build_config
    from mmkit.pipelines import video

    cfg = build_config(
        video.VideoConfig, None, {"dataset": str(dataset), "out": str(out), **flags}, sets
    )
    return video.train(cfg)


def score(checkpoint: Path, data: CameraData, prefix: str = "") -> dict[str, Any]:
    """Accuracy, macro-F1 and ``num_samples`` of ``checkpoint`` on every test clip of ``data``,
    keys prefixed with ``prefix``."""
    from mmkit.pipelines import video

    cfg = video.VideoConfig(dataset=str(data.test_manifest))
    report = video.evaluate(str(checkpoint), cfg, split="all")
    keys = ("accuracy", "macro_f1", "num_samples")
    return {prefix + k: round(report[k], 4) if k != "num_samples" else report[k] for k in keys}


def train_and_score(
    dataset: Path, data: CameraData, out: Path, flags: dict[str, Any], sets: Sequence[str]
) -> dict[str, Any]:
    """One fine-tuning run; its best and last checkpoints scored on every test clip."""
    from mmkit.io.checkpoint_dir import read_spec

    result = train(dataset, out, flags, sets)
    best = read_spec(Path(result.best_checkpoint))
    out_row = {
        **score(result.best_checkpoint, data),
        "val_accuracy": round(result.best_metric.get("accuracy", float("nan")), 4),
        "val_items": best.data["validation"]["num_items"],
        "best_epoch": best.epoch,
        "epochs_run": result.epochs,
        **score(result.last_checkpoint, data, "last_"),
    }
    if "patience" in flags:  # --trace: validation was the test set
        out_row["trace"] = [round(r["val_accuracy"], 3) for r in result.history]
    return out_row


def pretrain(args: argparse.Namespace, data: CameraData, out: Path) -> tuple[Path, dict[str, Any]]:
    """The pretraining run's best checkpoint (trained now, or ``--pretrain-run``'s) and its
    report: validation and held-out test accuracy on the translations."""
    from mmkit.io.checkpoint_dir import read_spec, resolve_checkpoint_dir

    if args.pretrain_run is not None:
        best = resolve_checkpoint_dir(args.pretrain_run)
    else:
        flags: dict[str, Any] = {"seed": 0}
        if args.epochs is not None:
            flags["epochs"] = args.epochs
        result = train(data.train_dir, out / "pretrain", flags, args.pretrain_set)
        best = Path(result.best_checkpoint)
    spec = read_spec(best)
    report = {
        "run": str(best.parent),
        "reused": args.pretrain_run is not None,
        "labels": spec.labels,
        "train_files": data.train_files,
        "set": args.pretrain_set,
        "val_accuracy": round(spec.metrics.get("accuracy", float("nan")), 4),
        "best_epoch": spec.epoch,
        "test_files": data.test_files,
    }
    if data.test_files and set(spec.labels) == set(data.spec.labels):
        report |= score(best, data, "test_")
        if report["test_num_samples"] != data.test_files:
            raise RuntimeError(
                f"pretrain: scored {report['test_num_samples']} items, "
                f"but the test set has {data.test_files}"
            )
    print(f"pretrain: {json.dumps(report)}", file=sys.stderr, flush=True)
    return best, report


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(max(1, args.threads))
    code = code_version()
    pre_spec, task_spec = specs(args)
    pre_data, data = ensure_data(args.data, pre_spec), ensure_data(args.data, task_spec)
    out = args.out or Path(tempfile.mkdtemp(prefix="mmkit-transfer-video-"))
    pretrained, pre_report = pretrain(args, pre_data, out)
    trace = {"patience": 0} if args.trace else {}
    shots = sorted(set(args.shots))
    manifests = {k: write_manifest(data, k, args.trace) for k in shots}
    rows = transfer_rows(
        lambda k, mode, seed: train_and_score(
            manifests[k],
            data,
            out / f"{mode}-{k}" / f"seed{seed}",
            {"seed": seed, **trace, **mode_flags(mode, pretrained)},
            args.set,
        ),
        shots,
        args.modes,
        args.seeds,
        data.test_files,
        classes=len(TASK_LABELS),
        unit="class",
    )
    test_rows = data.rows("test")
    return {
        "protocol": "transfer-video",
        "code": code,
        "set": args.set,
        "trace": args.trace,
        "pretrain": pre_report,
        "task": {"labels": list(TASK_LABELS), "data": str(data.root)},
        "test": {
            "files": data.test_files,
            "sources": sorted({r["group"] for r in test_rows}),
            "formats": sorted({r["format"] for r in test_rows}),
            "held_out": sorted(TEST_SOURCES),
        },
        "seeds": list(args.seeds),
        "rows": rows,
    }


def print_report(report: dict[str, Any], as_json: bool) -> None:
    pre = report["pretrain"]
    header = (
        f"code {report['code']}; pretrain {pre['labels']}: test accuracy "
        f"{pre.get('test_accuracy', 'n/a')}; test: {report['test']['files']} clips, "
        f"held-out sources {', '.join(report['test']['sources'])}"
    )
    print_transfer(report, as_json, header, "class")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    print_report(run(args), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
