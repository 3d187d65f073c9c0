"""``mmkit bench --scale``: how ``prepare``, one training epoch, ``eval`` and ``infer`` grow from
a sliver of a real-size data set to all of it.

For each kind (Speech Commands, a quarter of UCF101, COCO captions; made by
:mod:`~mmkit.pipelines.bench.scale_data`, cached under ``$MMKIT_CACHE/scale``) and each fraction
(1/64, 1/16, 1/4, 1), every step is a whole ``python -m mmkit ...`` process, a fresh one per
step, so each has its own peak RSS (``wait4``, :func:`~mmkit.pipelines.bench.timing.run_child`):

- ``prepare -d DATA -o STORE``; the store's bytes on disk per item;
- ``train -d STORE --epochs 1`` (per-item time from the epoch's own ``train_seconds``);
- ``eval`` over the whole test split (COCO: ``val2017``); ``infer`` (COCO: ``sim``) of one file.

Seconds per item leave out the fixed cost of a process that imports the modality's pipeline
(``startup_seconds``, measured alone). The ratios compare the largest fraction with the smallest;
``prepare_workers_2_over_1`` is the files/s of ``prepare --workers 2`` over ``--workers 1`` (the
decoding pool of :func:`~mmkit.data.store_builder.decode_all`), on the first fraction of at least
``workers_fraction`` (1/4: on smaller ones a process's fixed costs, such as building the
image-text model to read its store parameters, hide the decoding).
Models are the ``*_test`` variants by default: the data path, not the model, is what grows.

For video, ``store_formats`` compares ``--store-format raw`` and ``jpeg`` on the smallest
fraction: bytes on disk per clip, GB per 1,000 clips, and the training loader alone (store ->
batches through the training transforms on the device, no model:
:func:`~mmkit.pipelines.bench.loader.loader_rate`) in clips/s; ``jpeg_over_raw_*`` ratios.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from mmkit.cache import cache_dir
from mmkit.errors import UserInputError
from mmkit.events import NullProgress, Progress
from mmkit.pipelines.bench import scale_data
from mmkit.pipelines.bench.timing import ChildRun, load_average, run_child, slope

KINDS = {"speech_commands": "audio", "ucf101": "video", "coco": "mm"}
FRACTIONS = ("1/64", "1/16", "1/4", "1")
STEPS = ("prepare", "epoch", "eval", "infer")
TARGETS: dict[str, tuple[str, float]] = {
    "prepare_rss_largest_over_smallest": ("<=", 1.3),
    "epoch_rss_largest_over_smallest": ("<=", 1.3),
    "eval_rss_largest_over_smallest": ("<=", 1.3),
    "prepare_item_seconds_largest_over_smallest": ("<=", 1.2),
    "epoch_item_seconds_largest_over_smallest": ("<=", 1.2),
    "prepare_workers_2_over_1": (">=", 1.7),
}
TRAIN_ARGS = {
    "speech_commands": ("--backbone", "audio_cnn_test"),
    "ucf101": ("--backbone", "video_r3d_test"),
    "coco": ("--backbone", "clip_lite_test"),
}


@dataclass(frozen=True)
class ScaleSettings:
    """What ``mmkit bench --scale`` runs. ``data_args`` shape the store (given to prepare, train
    and eval alike); ``train_args`` go to train only."""

    kinds: tuple[str, ...] = tuple(KINDS)
    fractions: tuple[str, ...] = FRACTIONS
    data: str | None = None  # where generated data sets are kept; default $MMKIT_CACHE/scale
    seed: int = 0
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))  # to generate
    workers_fraction: str = "1/4"  # where prepare --workers 1 and 2 are compared
    data_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    train_args: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(TRAIN_ARGS))

    @classmethod
    def quick(cls, **changes: Any) -> ScaleSettings:
        """Tiny clips and batches, no loader workers: checks every part runs."""
        fast = ("--batch-size", "4", "--num-workers", "0")
        return cls(
            data_args={"ucf101": ("--size", "32", "--set", "store_frames=8")},
            train_args={
                "speech_commands": (*TRAIN_ARGS["speech_commands"], *fast),
                "ucf101": (*TRAIN_ARGS["ucf101"], "--frames", "4", *fast),
                "coco": (*TRAIN_ARGS["coco"], *fast),
            },
            **changes,
        )

    def sorted_fractions(self) -> list[Fraction]:
        fractions = sorted({scale_data.parse_fraction(f) for f in self.fractions})
        if not fractions:
            raise UserInputError("give at least one --scale-fractions value")
        return fractions


def run_scale(
    settings: ScaleSettings | None = None, device: str = "auto", progress: Progress | None = None
) -> dict[str, Any]:
    """Every kind of ``settings`` at every fraction; see the module docstring."""
    from mmkit.engine.placement import resolve_device
    from mmkit.pipelines.bench import judge, machine

    settings = settings or ScaleSettings()
    progress = progress or NullProgress()
    unknown = [k for k in settings.kinds if k not in KINDS]
    if unknown:
        raise UserInputError(f"no scale data set {unknown}; available: {', '.join(KINDS)}")
    fractions = settings.sorted_fractions()
    dev = str(resolve_device(device))
    report: dict[str, Any] = {"machine": machine(dev), "load_average": {"before": load_average()}}
    results = {}
    with tempfile.TemporaryDirectory(prefix="mmkit-scale-") as tmp:
        for kind in dict.fromkeys(settings.kinds):
            result = scale_kind(kind, fractions, settings, dev, Path(tmp), progress)
            results[kind] = {**result, **judge(result["ratios"], dev, TARGETS)}
    report["load_average"]["after"] = load_average()
    report["fractions"] = [str(f) for f in fractions]
    report["results"] = results
    report["all_targets_met"] = all(all(r["met"].values()) for r in results.values())
    return report


def scale_kind(
    kind: str,
    fractions: list[Fraction],
    settings: ScaleSettings,
    device: str,
    workdir: Path,
    progress: Progress,
) -> dict[str, Any]:
    """The points of ``kind`` at ``fractions`` (ascending), the workers comparison on the
    smallest, and the ratios and slopes between them."""
    modality = KINDS[kind]
    startup = min(
        run_child([sys.executable, "-c", f"import mmkit.cli.main, mmkit.pipelines.{modality}"])
        .seconds for _ in range(2)
    )  # fmt: skip
    root = Path(settings.data) if settings.data else cache_dir() / "scale"
    points, workers, formats = [], None, None
    target = scale_data.parse_fraction(settings.workers_fraction)
    compared = min((f for f in fractions if f >= target), default=fractions[-1])
    for fraction in fractions:
        progress.message(f"{kind}: data at {fraction} (generated once, then cached)")
        data = scale_data.generate(
            kind,
            fraction,
            root / scale_data.default_dir(kind, fraction, settings.seed).name,
            seed=settings.seed,
            workers=settings.workers,
        )
        if fraction == compared:
            progress.message(f"{kind} {fraction}: prepare with 1 and 2 decoding workers")
            workers = prepare_workers(kind, data.path, settings, workdir, startup)
        if fraction == fractions[0] and modality == "video":
            progress.message(f"{kind} {fraction}: raw and jpeg frame stores")
            formats = store_formats(kind, data.path, settings, device, workdir)
        progress.message(f"{kind} {fraction}: prepare, one epoch, eval, infer")
        points.append(measure_point(kind, data, settings, device, workdir, startup))
    return {
        "kind": kind,
        "modality": modality,
        "device": device,
        "startup_seconds": round(startup, 3),
        "points": points,
        "prepare_workers": workers,
        **compare(points, workers, formats),
        **({"store_formats": formats} if formats else {}),
    }


def _mmkit(kind: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mmkit", KINDS[kind], *map(str, args)]


def _step(run: ChildRun, items: int, net_seconds: float) -> dict[str, Any]:
    net = max(net_seconds, 1e-6)
    return {
        "seconds": round(run.seconds, 3),
        "net_seconds": round(net, 3),
        "items": items,
        "items_per_second": round(items / net, 2),
        "item_seconds": round(net / items, 6) if items else 0.0,
        "peak_rss_mb": round(run.peak_rss_mb, 1),
    }


def _store_items(summary: dict[str, Any]) -> tuple[int, int]:
    """(items in the store, train items) of a ``prepare --json`` summary."""
    train = summary["splits"].get("train", 0)
    if "num_images" in summary:  # mm
        return summary["num_images"], train["images"] if train else 0
    return summary["num_items"], train


def measure_point(
    kind: str,
    data: scale_data.ScaleData,
    settings: ScaleSettings,
    device: str,
    workdir: Path,
    startup: float,
) -> dict[str, Any]:
    """prepare, one epoch, eval over the test split and infer of one file at one fraction."""
    tag = data.path.name
    store, run = workdir / f"{tag}-store", workdir / f"{tag}-run"
    shape = settings.data_args.get(kind, ())
    prep = run_child(_mmkit(kind, "prepare", "-d", data.path, "-o", store, *shape, "--json"))
    items, train_items = _store_items(json.loads(prep.stdout))
    size = sum(f.stat().st_blocks * 512 for f in store.rglob("*") if f.is_file())
    dev = ("--device", device)
    train = [*shape, *settings.train_args.get(kind, ()), "--logger", "none", *dev, "--json"]
    epoch = run_child(_mmkit(kind, "train", "-d", store, "-o", run, "--epochs", "1", *train))
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    split = "validation" if kind == "coco" else "test"
    ev = run_child(_mmkit(kind, "eval", "-k", run, "-d", store, "--split", split, *dev, "--json"))
    scored = json.loads(ev.stdout)
    scored_items = scored["num_images"] if kind == "coco" else scored["num_samples"]
    media = example_file(kind, data.path)
    ask = ("sim", media, "a red circle") if kind == "coco" else ("infer", media)
    infer = run_child(_mmkit(kind, *ask, "-k", run, *dev, "--json"))
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    return {
        "fraction": data.params["fraction"],
        "files": data.files,
        "generate": {"seconds": round(data.seconds, 3), "cached": data.cached},
        "store_bytes": size,
        "store_bytes_per_item": round(size / max(1, items), 1),
        "prepare": _step(prep, items, prep.seconds - startup),
        "epoch": _step(epoch, train_items, first["train_seconds"]),
        "eval": _step(ev, scored_items, ev.seconds - startup),
        "infer": _step(infer, 1, infer.seconds - startup),
    }


def prepare_workers(
    kind: str, data: Path, settings: ScaleSettings, workdir: Path, startup: float
) -> dict[str, Any]:
    """Files per second of ``prepare`` with a decoding pool of 1 and of 2 threads."""
    rates, items = {}, 0
    for n in (1, 2):
        store = workdir / f"workers-{n}"
        shape = settings.data_args.get(kind, ())
        run = run_child(_mmkit(kind, "prepare", "-d", data, "-o", store, "--workers", str(n),
                               *shape, "--json"))  # fmt: skip
        items = _store_items(json.loads(run.stdout))[0]
        rates[str(n)] = round(items / max(run.seconds - startup, 1e-6), 2)
        shutil.rmtree(store, ignore_errors=True)
    return {"items": items, "files_per_second": rates}


def store_formats(
    kind: str, data: Path, settings: ScaleSettings, device: str, workdir: Path, timed: int = 512
) -> dict[str, Any]:
    """Per ``--store-format``: store bytes per clip, GB per 1,000 clips and the loader's
    clips/s (the training set of the store, ``train_args`` as given to train; epochs after
    the first until at least ``timed`` clips are timed)."""
    from mmkit.config import build_config
    from mmkit.configs import VideoConfig
    from mmkit.pipelines import classify, video
    from mmkit.pipelines.bench.loader import loader_rate

    out: dict[str, Any] = {}
    for fmt in ("raw", "jpeg"):
        store = workdir / f"format-{fmt}"
        shape = settings.data_args.get(kind, ())
        run = run_child(_mmkit(kind, "prepare", "-d", data, "-o", store, "--store-format", fmt,
                               *shape, "--json"))  # fmt: skip
        items = _store_items(json.loads(run.stdout))[0]
        size = sum(f.stat().st_blocks * 512 for f in store.rglob("*") if f.is_file())
        args = [*shape, *settings.train_args.get(kind, ()), "--store-format", fmt]
        sets = [f"dataset={store}", *_as_sets(args), f"device={device}"]
        cfg = build_config(VideoConfig, None, {}, sets)
        job = classify.training_job(video.MODALITY, cfg, NullProgress())
        epochs = 1 + -(-timed // max(1, len(job.train_set)))
        rate = loader_rate(job.train_set, job, cfg, epochs)
        out[fmt] = {
            "items": items,
            "store_bytes_per_item": round(size / max(1, items), 1),
            "gb_per_1000_items": round(size / max(1, items) * 1000 / 1e9, 3),
            "loader_items_per_second": round(rate["items_per_second"], 2),
            "loader_items_timed": rate["items"] * (epochs - 1),
        }
        shutil.rmtree(store, ignore_errors=True)
    return out


def _as_sets(args: tuple[str, ...] | list[str]) -> list[str]:
    """Train options given as ``--name value`` pairs (``--set k=v`` as is) as ``--set`` items,
    for a config built in this process."""
    pairs = zip(args[::2], args[1::2], strict=True)
    return [v if k == "--set" else f"{k[2:].replace('-', '_')}={v}" for k, v in pairs]


def example_file(kind: str, root: Path) -> Path:
    """One test file of a generated data set (COCO: a val2017 image)."""
    if kind == "speech_commands":
        first = (root / "testing_list.txt").read_text().split() or ["*/*.wav"]
        return next(p for p in root.glob(first[0]))
    if kind == "ucf101":
        listing = root / "ucfTrainTestlist" / "testlist01.txt"
        name = Path(listing.read_text().split()[0]).name
        return next((root / "UCF-101").glob(f"*/{name}"))
    return min((root / "val2017").glob("*.jpg"))


def compare(
    points: list[dict[str, Any]],
    workers: dict[str, Any] | None,
    formats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``ratios`` of the largest point to the smallest (peak RSS and seconds per item of each
    step, infer's seconds), the workers ratio, and least-squares ``slopes_per_1000_items`` of
    each step's net seconds and peak RSS over the data set's items."""
    ratios: dict[str, float] = {}
    slopes: dict[str, float] = {}
    if len(points) >= 2:
        first, last = points[0], points[-1]
        for step in STEPS:
            a, b = first[step], last[step]
            ratios[f"{step}_rss_largest_over_smallest"] = round(
                b["peak_rss_mb"] / a["peak_rss_mb"], 3
            )
            if step == "infer":
                ratios["infer_seconds_largest_over_smallest"] = round(
                    b["seconds"] / a["seconds"], 3
                )
            else:
                ratio = b["item_seconds"] / max(a["item_seconds"], 1e-12)
                ratios[f"{step}_item_seconds_largest_over_smallest"] = round(ratio, 3)
        ratios["store_bytes_per_item_largest_over_smallest"] = round(
            last["store_bytes_per_item"] / max(first["store_bytes_per_item"], 1e-9), 3
        )
        items = [p["prepare"]["items"] / 1000 for p in points]
        for step in STEPS[:3]:
            for key in ("net_seconds", "peak_rss_mb"):
                slopes[f"{step}_{key}"] = round(slope(items, [p[step][key] for p in points]), 3)
    if workers:
        rates = workers["files_per_second"]
        ratios["prepare_workers_2_over_1"] = round(rates["2"] / max(rates["1"], 1e-9), 3)
    if formats:
        raw, jpeg = formats["raw"], formats["jpeg"]
        for key in ("store_bytes_per_item", "loader_items_per_second"):
            ratios[f"jpeg_over_raw_{key}"] = round(jpeg[key] / max(raw[key], 1e-9), 3)
    return {"ratios": ratios, "slopes_per_1000_items": slopes}
