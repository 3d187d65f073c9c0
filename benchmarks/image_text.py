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
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.camera_motion import parse_overrides
from benchmarks.protocol import code_version, summarize

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
        if report["num_images"] != data[f"{name}_images"]:
            raise RuntimeError(f"{name}: scored {report['num_images']} images")
        row[name] = {
            "num_images": report["num_images"],
            "num_pairs": report["num_pairs"],
            "i2t_R@1": round(report["image_to_text"]["R@1"], 4),
            "t2i_R@1": round(report["text_to_image"]["R@1"], 4),
            "i2t_R@5": round(report["image_to_text"]["R@5"], 4),
            "t2i_R@5": round(report["text_to_image"]["R@5"], 4),
            "zero_shot_accuracy": report.get("zero_shot_accuracy"),
        }
    return row


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    overrides = parse_overrides(args.set)
    code = code_version()
    data = ensure_data(args.data)
    out = args.out or Path(tempfile.mkdtemp(prefix="mmkit-image-text-"))
    seeds = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        row = {"seed": seed, **run_seed(data, seed, overrides, out / f"seed{seed}")}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        seeds.append(row)
        print(f"mm seed {seed}: {json.dumps(row)}", file=sys.stderr, flush=True)
    report: dict[str, Any] = {
        "code": code,
        "settings": overrides,
        "data": {k: str(v) for k, v in data.items()},
        "per_seed": seeds,
    }
    for name in ("same", "new"):
        for key in ("i2t_R@1", "t2i_R@1", "zero_shot_accuracy"):
            values = [s[name][key] for s in seeds if s[name][key] is not None]
            if values:
                report.setdefault(name, {})[key] = summarize(values)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("| test set | images | image->text R@1 | text->image R@1 | per seed (i2t / t2i) |")
    print("|---|---|---|---|---|")
    for name, title in (("same", "same concepts"), ("new", "new concepts")):
        i2t, t2i = report[name]["i2t_R@1"], report[name]["t2i_R@1"]
        per = ", ".join(f"{s[name]['i2t_R@1']:.2f} / {s[name]['t2i_R@1']:.2f}" for s in seeds)
        print(
            f"| {title} | {seeds[0][name]['num_images']} | {i2t['mean']:.3f} ± {i2t['std']:.3f} "
            f"| {t2i['mean']:.3f} ± {t2i['std']:.3f} | {per} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
