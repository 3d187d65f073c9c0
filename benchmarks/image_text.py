"""Image-text retrieval with ``mmkit mm train`` defaults: held-out renders of seen concepts vs new
concepts.

Scenes come from ``tests.media.images.write_scene_images``: one or two shapes of a colour at a
named position, captions exactly true (``"a red circle on the left"``), rendered at 64x64,
80x60 and 96x72 as jpg/png/webp. Four shape-colour pairs (a Latin square: red circle, green
square, blue triangle, yellow cross) never appear in training; every shape and every colour
still does, with other partners. Three sets, written as CSV manifests (``image,caption,label``,
one row per caption):

- ``train.csv``: every rendered scene without a held-out pair, minus the same-concept test
  images; no split column, so mmkit splits it as it would a user's manifest;
- ``same.csv``: 60 held-out renders of 60 DISTINCT scenes whose pairs training has seen;
- ``new.csv``: 60 renders of 60 distinct scenes that contain a held-out pair.

Both test sets have 60 images and 120 captions, so their R@1 are comparable; scenes are distinct
within a set, so no two captions are the same text (mm eval counts ties against the query). Each
seed trains with the defaults (``mmkit mm train --dataset train.csv``) and is scored with
``mmkit.pipelines.mm.evaluate(..., split="all")`` on each test set.

    python -m benchmarks.image_text [--seeds 0 1 2] [--json] [--data DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.camera_motion import parse_overrides
from benchmarks.protocol import base_parser, code_version, summarize

DEFAULT_DATA = Path("~/.cache/mmkit/bench/image_text")
HELD_OUT_PAIRS = {("circle", "red"), ("square", "green"), ("triangle", "blue"), ("cross", "yellow")}
POOL, TEST_IMAGES, DATA_SEED, DATA_VERSION = 1500, 60, 0, 1
SIZES = ((64, 64), (80, 60), (96, 72))


def is_new(record: Any) -> bool:
    """Whether a scene shows a shape-colour pair training never sees."""
    return any((o.shape, o.colour) in HELD_OUT_PAIRS for o in record.scene.objects)


def _write(path: Path, records: Sequence[Any], root: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=("image", "caption", "label"))
        writer.writeheader()
        for r in records:
            rel = r.path.relative_to(root).as_posix()
            writer.writerows({"image": rel, "caption": c, "label": r.label} for c in r.captions)


def _distinct(records: Sequence[Any], n: int) -> list[Any]:
    """The first ``n`` records with distinct scenes."""
    seen, out = set(), []
    for r in records:
        if r.scene.objects not in seen:
            seen.add(r.scene.objects)
            out.append(r)
        if len(out) == n:
            return out
    raise RuntimeError(f"only {len(out)} distinct scenes, {n} wanted")


def ensure_data(cache: Path) -> dict[str, Any]:
    """Render the pool once and write ``train.csv``, ``same.csv`` and ``new.csv``."""
    from tests.media.images import write_scene_images

    root = Path(cache).expanduser() / f"v{DATA_VERSION}-seed{DATA_SEED}-n{POOL}"
    if not (root / "counts.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root.parent))
        try:
            records = write_scene_images(
                tmp / "images", POOL, seed=DATA_SEED, sizes=SIZES, splits={"train": 1.0}
            )
            seen = [r for r in records if not is_new(r)]
            same = _distinct(seen[::-1], TEST_IMAGES)  # from the end: the rest stays in order
            new = _distinct([r for r in records if is_new(r)], TEST_IMAGES)
            chosen = {r.path for r in same}
            train = [r for r in seen if r.path not in chosen]
            for name, part in (("train", train), ("same", same), ("new", new)):
                _write(tmp / f"{name}.csv", part, tmp)
            counts = {"train_images": len(train), "same_images": len(same), "new_images": len(new)}
            (tmp / "counts.json").write_text(json.dumps(counts))
            shutil.rmtree(root, ignore_errors=True)
            tmp.rename(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"root": root, **json.loads((root / "counts.json").read_text())}


def run_seed(data: dict[str, Any], seed: int, overrides: dict[str, Any], out: Path) -> dict:
    from mmkit.config import build_config
    from mmkit.pipelines import mm

    root = data["root"]
    flags = {"dataset": str(root / "train.csv"), "out": str(out), "seed": seed}
    cfg = build_config(mm.MMConfig, None, {**overrides, **flags})
    result = mm.train(cfg)
    row: dict[str, Any] = {"epochs_run": result.epochs, "val": result.best_metric}
    for name in ("same", "new"):
        report = mm.evaluate(
            str(result.best_checkpoint), mm.MMConfig(dataset=str(root / f"{name}.csv")), split="all"
        )
        row[name] = score_row(report)
    return row


def score_row(report: dict[str, Any]) -> dict[str, Any]:
    """The per-test-set entry of a seed's row from an ``mm eval``-shaped report."""
    return {
        "num_images": report["num_images"],
        "num_pairs": report["num_pairs"],
        "i2t_R@1": round(report["image_to_text"]["R@1"], 4),
        "t2i_R@1": round(report["text_to_image"]["R@1"], 4),
        "i2t_R@5": round(report["image_to_text"]["R@5"], 4),
        "t2i_R@5": round(report["text_to_image"]["R@5"], 4),
        "zero_shot_accuracy": report.get("zero_shot_accuracy"),
    }


KEYS = ("i2t_R@1", "t2i_R@1", "i2t_R@5", "t2i_R@5", "zero_shot_accuracy")


def run_protocol(
    run: Callable[[dict[str, Any], int, Path], dict[str, Any]],
    args: argparse.Namespace,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """``run(data, seed, out_dir)`` for each of ``args.seeds``, each seed's row checked to have
    scored every test image; the report with the per-seed rows and their summaries."""
    import torch

    torch.set_num_threads(max(1, args.threads))
    code = code_version()
    data = ensure_data(args.data)
    out = args.out or Path(tempfile.mkdtemp(prefix="mmkit-image-text-"))
    seeds = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        row = {"seed": seed, **run(data, seed, out / f"seed{seed}")}
        for name in ("same", "new"):
            if row[name]["num_images"] != data[f"{name}_images"]:
                raise RuntimeError(f"{name}: scored {row[name]['num_images']} images")
        row["seconds"] = round(time.perf_counter() - t0, 1)
        seeds.append(row)
        print(f"mm seed {seed}: {json.dumps(row)}", file=sys.stderr, flush=True)
    report: dict[str, Any] = {
        "code": code,
        "settings": settings,
        "data": {k: str(v) for k, v in data.items()},
        "per_seed": seeds,
    }
    for name in ("same", "new"):
        for key in KEYS:
            values = [s[name][key] for s in seeds if s[name][key] is not None]
            if values:
                report.setdefault(name, {})[key] = summarize(values)
    return report


def print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    seeds = report["per_seed"]
    print("| test set | images | captions | i2t R@1 | t2i R@1 | i2t R@5 | t2i R@5 |")
    print("|---|---|---|---|---|---|---|")
    for name, title in (("same", "same concepts"), ("new", "new concepts")):
        cells = [f"{report[name][k]['mean']:.3f} ± {report[name][k]['std']:.3f}" for k in KEYS[:4]]
        first = seeds[0][name]
        print(f"| {title} | {first['num_images']} | {first['num_pairs']} | {' | '.join(cells)} |")


def main(argv: Sequence[str] | None = None, settings: dict[str, Any] | None = None) -> int:
    """The protocol with mmkit's defaults and ``--set`` overrides (``settings``: what else the
    caller changed, recorded in the report)."""
    parser = base_parser(__doc__.split("\n\n")[0], DEFAULT_DATA)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    if args.epochs:
        overrides["epochs"] = args.epochs
    report = run_protocol(
        lambda data, seed, out: run_seed(data, seed, overrides, out),
        args,
        {**overrides, **(settings or {})},
    )
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
