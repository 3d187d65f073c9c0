"""Image-text retrieval with ``mmkit mm train`` defaults: held-out renders of seen concepts vs new
concepts.

Scenes come from ``tests.media.images.write_scene_images``: one or two shapes of a colour at a
named position, captions exactly true (``"a red circle on the left"``), rendered at 64x64,
80x60 and 96x72 as jpg/png/webp. Four shape-colour pairs (a Latin square: red circle, green
square, blue triangle, yellow cross) never appear in training; every shape and every colour
still does, with other partners. The sets (``image_text_data.py``), CSV manifests
(``image,caption,label``, one row per caption):

- ``train.csv``: every rendered scene without a held-out pair, minus the same-concept test
  images; no split column, so mmkit splits it as it would a user's manifest;
- ``same``: held-out renders of scenes whose pairs training has seen;
- ``new``: renders of scenes that contain a held-out pair;

each test set in ``--galleries`` galleries (default 6: 360 images, 720 captions) of 60 images of
60 scenes that are distinct pictures, with their 120 captions, no text twice; an image or
caption is ranked within its gallery (mm eval counts ties against the query), and a set's figure
is the mean over all its images (captions for text->image). ``--galleries 1`` is the protocol of
issue 9 (one 60-image set each, in which a few scenes are the same picture), also scored as
``same_v1`` / ``new_v1`` with more galleries. Each seed trains with the defaults (``mmkit mm
train --dataset train.csv``, the same file in both) and is scored with
``mmkit.pipelines.mm.evaluate(..., split="all")`` on each gallery.

    python -m benchmarks.image_text [--seeds 0 1 2] [--galleries 6] [--json] [--set key=value]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.camera_motion import parse_overrides
from benchmarks.image_text_data import SETS, ensure_data, gallery_files
from benchmarks.protocol import base_parser, code_version, summarize

DEFAULT_DATA = Path("~/.cache/mmkit/bench/image_text")


def run_seed(data: dict[str, Any], seed: int, overrides: dict[str, Any], out: Path) -> dict:
    from mmkit.config import build_config
    from mmkit.pipelines import mm

    flags = {"dataset": str(Path(data["root"]) / "train.csv"), "out": str(out), "seed": seed}
    cfg = build_config(mm.MMConfig, None, {**overrides, **flags})
    result = mm.train(cfg)
    checkpoint = str(result.best_checkpoint)
    row: dict[str, Any] = {"epochs_run": result.epochs, "val": result.best_metric}
    return row | score_sets(
        data,
        lambda manifest: mm.evaluate(checkpoint, mm.MMConfig(dataset=str(manifest)), split="all"),
    )


def score_sets(data: dict[str, Any], score: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """A seed's test entries: ``score(manifest)`` (an ``mm eval``-shaped report) for every
    gallery of each test set: ``same`` / ``new`` over all galleries (each figure the mean over
    images, or captions for text->image); with several galleries also ``*_galleries`` (each
    one) and ``same_v1`` / ``new_v1`` (issue 9's 60-image sets)."""
    row: dict[str, Any] = {}
    for name in SETS:
        rows = [score_row(score(path)) for path in gallery_files(data, name)]
        row[name] = pooled(rows)
        if len(rows) > 1:
            row[f"{name}_galleries"] = rows
            row[f"{name}_v1"] = score_row(score(Path(data["root"]) / f"{name}.csv"))
    return row


def pooled(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Gallery rows as one: counts summed, each figure weighted by what it averages over."""
    images = sum(r["num_images"] for r in rows)
    pairs = sum(r["num_pairs"] for r in rows)
    out: dict[str, Any] = {"num_images": images, "num_pairs": pairs}
    for key in KEYS:
        if any(r[key] is None for r in rows):
            out[key] = None
            continue
        weight = "num_pairs" if key.startswith("t2i") else "num_images"
        total = sum(r[key] * r[weight] for r in rows) / sum(r[weight] for r in rows)
        out[key] = round(total, 4)
    return out


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
    data = ensure_data(args.data, args.galleries)
    out = args.out or Path(tempfile.mkdtemp(prefix="mmkit-image-text-"))
    seeds = []
    for seed in args.seeds:
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        row = {"seed": seed, **run(data, seed, out / f"seed{seed}")}
        for name in SETS:
            if row[name]["num_images"] != data[f"{name}_images"]:
                raise RuntimeError(f"{name}: scored {row[name]['num_images']} images")
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row["cpu_seconds"] = round(cpu_seconds() - cpu0, 1)
        seeds.append(row)
        short = {k: v for k, v in row.items() if not k.endswith("_galleries")}
        print(f"mm seed {seed}: {json.dumps(short)}", file=sys.stderr, flush=True)
    report: dict[str, Any] = {
        "code": code,
        "settings": settings,
        "data": {k: str(v) for k, v in data.items()},
        "per_seed": seeds,
    }
    for name in (*SETS, *(f"{s}_v1" for s in SETS)):
        for key in KEYS:
            values = [s[name][key] for s in seeds if name in s and s[name][key] is not None]
            if values:
                report.setdefault(name, {})[key] = summarize(values)
    return report


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (loader workers): the
    cost of a seed on a shared machine, where wall time depends on the other jobs."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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


def protocol_parser(description: str) -> argparse.ArgumentParser:
    """``base_parser`` and ``--galleries``."""
    parser = base_parser(description, DEFAULT_DATA)
    parser.add_argument(
        "--galleries", type=int, default=6, help="60-image galleries per test set (1: issue 9's)"
    )
    return parser


def main(argv: Sequence[str] | None = None, settings: dict[str, Any] | None = None) -> int:
    """The protocol with mmkit's defaults and ``--set`` overrides (``settings``: what else the
    caller changed, recorded in the report)."""
    parser = protocol_parser(__doc__.split("\n\n")[0])
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
