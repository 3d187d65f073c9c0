"""One benchmark per modality: the default recipe's real epoch against its ceiling and against
the path users would otherwise take (see :mod:`mmkit.pipelines.bench`)."""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

import mmkit.pipelines.bench.costs as costs
import mmkit.pipelines.bench.datagen as datagen
import mmkit.pipelines.bench.peers as peers
from mmkit import runtime
from mmkit.configs import AudioConfig, MMConfig, VideoConfig
from mmkit.data.captions import resolve_captions
from mmkit.data.mm_store import decode_item
from mmkit.data.sources import resolve
from mmkit.engine.placement import resolve_device
from mmkit.events import Progress
from mmkit.pipelines.bench.epoch import measure_epochs, synthetic_like, to_device
from mmkit.pipelines.bench.loader import loader_report, redecoding_set
from mmkit.pipelines.bench.settings import BenchSettings, cached_data
from mmkit.pipelines.bench.timing import child_env, median, run_child, sync, training_step

# a user's script: torch first, so OpenMP starts with torch's own defaults
USER_SCRIPT = "import torch, sys\nfrom mmkit.pipelines.bench.child import main\nmain(sys.argv[1:])"


def _peer_epochs(job: dict[str, Any], workdir: Path, *, user_env: bool) -> float:
    """Median epoch seconds of a peer ``job`` in a child process. ``user_env``: as a user's
    script runs it (torch imported first, OpenMP left at its defaults); else with mmkit's
    process settings (:mod:`mmkit.runtime`)."""
    path = workdir / f"{job['kind']}-{int(user_env)}.json"
    path.write_text(json.dumps(job))
    if user_env:
        env = child_env()
        for key in runtime.DEFAULTS:
            if key in runtime.SET_BY_MMKIT:
                env.pop(key, None)
        cmd = [sys.executable, "-c", USER_SCRIPT, str(path)]
    else:
        env, cmd = child_env(), [sys.executable, "-m", "mmkit.pipelines.bench.child", str(path)]
    result = json.loads(run_child(cmd, env=env).stdout)
    return result["items"] / median(result["epoch_seconds"])


class _PeerRuns:
    """A peer ``job`` run as a user's script (:meth:`user`) and with mmkit's process settings
    (:meth:`mmkit`), each called between two epochs; items/s in ``rates``."""

    def __init__(self, job: dict[str, Any], workdir: Path, progress: Progress, what: str):
        self.job, self.workdir, self.progress, self.what = job, workdir, progress, what
        self.rates: dict[str, float] = {}

    def user(self) -> None:
        self.progress.message(f"{self.what}, run as a user's script")
        self.rates["user"] = _peer_epochs(self.job, self.workdir, user_env=True)

    def mmkit(self) -> None:
        self.progress.message(f"{self.what}, with mmkit's thread settings")
        self.rates["mmkit"] = _peer_epochs(self.job, self.workdir, user_env=False)


def _class_index(files: list[Path]) -> list[int]:
    names = sorted({f.parent.name for f in files})
    return [names.index(f.parent.name) for f in files]


def bench_audio(
    settings: BenchSettings, device: str, workdir: Path, progress: Progress
) -> dict[str, Any]:
    progress.message("audio: data (generated once, then cached)")
    data = cached_data(
        "audio-folder",
        {"train": settings.audio_items, "validation": settings.validation_items},
        lambda out: datagen.audio_folder(
            out, train=settings.audio_items, validation=settings.validation_items
        ),
    )
    cfg = AudioConfig(
        dataset=str(data), device=device, prepared=str(workdir / "audio-store"), seed=0
    )
    cfg = replace(cfg, **settings.overrides.get("audio", {}))
    from mmkit.pipelines import audio, classify

    start = time.perf_counter()
    job = classify.training_job(audio.MODALITY, cfg, progress)
    prepare_seconds = time.perf_counter() - start
    files = sorted((data / "train").rglob("*.*"))
    peer = {
        "kind": "audio_peer",
        "files": [str(f) for f in files],
        "labels": _class_index(files),
        "mel": cfg.log_mel_params(),
        "num_samples": cfg.num_samples,
        "backbone": cfg.backbone,
        "num_classes": len(job.task.labels),
        "batch_size": cfg.batch_size,
        "epochs": settings.peer_epochs,
        "lr": cfg.lr,
    }
    peers_between = _PeerRuns(peer, workdir, progress, "the per-sample loader")
    progress.message("audio: epochs of the default recipe against its ceiling; peers between")
    plan = settings.plan("audio").with_between(peers_between.user, peers_between.mmkit)
    numbers = measure_epochs(cfg, job, workdir / "audio-run", plan, progress)
    report = numbers.report()
    user, same = peers_between.rates["user"], peers_between.rates["mmkit"]
    report["items_per_second"].update(per_sample_loader=round(user, 2))
    report["items_per_second"]["per_sample_loader_mmkit_threads"] = round(same, 2)
    report["seconds"]["prepare"] = round(prepare_seconds, 3)
    report["ratios"]["epoch_over_per_sample_loader"] = round(numbers.epoch_rate / user, 3)
    report["ratios"]["epoch_over_per_sample_loader_mmkit_threads"] = round(
        numbers.epoch_rate / same, 3
    )
    progress.message("audio: the loader alone, from the store and decoding every file again")
    records = resolve(cfg.dataset, classify.source_options(audio.MODALITY, cfg)).records
    redecode = redecoding_set(job.train_set, records, audio.MODALITY.decode)
    _merge(report, loader_report("audio", job, cfg, redecode))
    if settings.cold_start:
        progress.message("audio: cold start (--help, one-file infer, import torch)")
        media = next(f for f in files if f.suffix == ".wav")
        cold = costs.cold_start(workdir / "audio-run", media, settings.cold_repeats)
        report["seconds"].update(cold["seconds"])
        report["ratios"].update(cold["ratios"])
    if settings.growth:
        rows = settings.growth_rows
        shards = cached_data(
            "audio-hf-parquet",
            {"rows": rows, "shards": max(settings.growth_factors), "s": settings.growth_seconds},
            lambda out: datagen.audio_parquet_shards(
                out,
                shards=max(settings.growth_factors),
                rows=rows,
                validation=settings.validation_items,
                seconds=settings.growth_seconds,
            ),
        )
        grown = costs.growth(
            shards,
            rows,
            settings.growth_factors,
            workdir / "growth",
            backbone=settings.growth_backbone,
            progress=progress,
        )
        report["ratios"].update(grown.pop("ratios"))
        report["growth"] = grown
    return report


def bench_video(
    settings: BenchSettings, device: str, workdir: Path, progress: Progress
) -> dict[str, Any]:
    progress.message("video: data (generated once, then cached)")
    data = cached_data(
        "video-folder",
        {"train": settings.video_items, "validation": settings.video_validation_items},
        lambda out: datagen.video_folder(
            out, train=settings.video_items, validation=settings.video_validation_items
        ),
    )
    cfg = VideoConfig(dataset=str(data), device=device, prepared=str(workdir / "video-store"))
    cfg = replace(cfg, **settings.overrides.get("video", {}))
    from mmkit.pipelines import classify, video

    files = sorted(data.rglob("*.mp4"))
    progress.message("video: store build against ffmpeg decoding to raw frames")
    ffmpeg = peers.ffmpeg_raw_seconds(files, cfg.short_side)
    start = time.perf_counter()
    video.prepare(cfg, out=cfg.prepared, progress=progress)
    build = time.perf_counter() - start
    ffmpeg = (ffmpeg + peers.ffmpeg_raw_seconds(files, cfg.short_side)) / 2
    job = classify.training_job(video.MODALITY, cfg, progress)
    progress.message("video: epochs of the default recipe against its ceiling")
    numbers = measure_epochs(cfg, job, workdir / "video-run", settings.plan("video"), progress)
    report = numbers.report()
    report["items_per_second"].update(
        store_build=round(len(files) / build, 2),
        ffmpeg_raw_decode=round(len(files) / ffmpeg, 2),
    )
    report["seconds"].update(store_build=round(build, 3), ffmpeg_raw_decode=round(ffmpeg, 3))
    report["ratios"]["store_build_over_ffmpeg"] = round(ffmpeg / build, 3)
    progress.message("video: the loader alone, from the store and decoding every clip again")
    records = resolve(cfg.dataset, classify.source_options(video.MODALITY, cfg)).records
    redecode = redecoding_set(job.train_set, records, video.MODALITY.decode)
    _merge(report, loader_report("video", job, cfg, redecode))
    return report


def bench_mm(
    settings: BenchSettings, device: str, workdir: Path, progress: Progress
) -> dict[str, Any]:
    progress.message("mm: data (generated once, then cached)")
    data = cached_data(
        "mm-captions",
        {"train": settings.mm_items, "validation": settings.validation_items},
        lambda out: datagen.caption_manifest(
            out, train=settings.mm_items, validation=settings.validation_items
        ),
    )
    cfg = MMConfig(
        dataset=str(data / "captions.csv"), device=device, prepared=str(workdir / "mm-store")
    )
    cfg = replace(cfg, **settings.overrides.get("mm", {}))
    from mmkit.pipelines import mm

    job = mm.training_job(cfg, progress)
    progress.message("mm: CLIP-lite steps against a plain open_clip loop")
    steps = _clip_steps(cfg, job, settings.open_clip_pairs)
    progress.message("mm: epochs of the default recipe against its ceiling")
    numbers = measure_epochs(cfg, job, workdir / "mm-run", settings.plan("mm"), progress)
    report = numbers.report()
    report["items_per_second"].update(steps["items_per_second"])
    report["ratios"]["step_over_open_clip_loop"] = steps["ratio"]
    progress.message("mm: the loader alone, from the store and decoding every image again")
    records = resolve_captions(cfg.dataset, mm.caption_options(cfg)).records
    redecode = redecoding_set(job.train_set, records, decode_item)
    _merge(report, loader_report("mm", job, cfg, redecode))
    return report


def _merge(report: dict[str, Any], more: dict[str, Any]) -> None:
    """``more``'s rates and ratios into ``report``'s, its other keys beside them."""
    for key, value in more.items():
        if isinstance(value, dict) and key in report:
            report[key].update(value)
        else:
            report[key] = value


def _clip_steps(cfg: MMConfig, job: Any, pairs: int) -> dict[str, Any]:
    """mmkit's CLIP-lite training step (image transform on the device, ContrastiveLoss,
    AdamW) and the open_clip twin's plain step, one after the other ``pairs`` times on
    synthetic batches already on the device: per-step medians, and the median of the pairs'
    ratios."""
    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(0)
    real = default_collate([job.train_set[i] for i in range(cfg.batch_size)])
    batch = to_device(synthetic_like(real, gen), device)
    model = copy.deepcopy(job.model).to(device)
    ours = training_step(model, lambda m, b: job.task.loss(m, b, device), batch, lr=cfg.lr)
    clip = model.model
    twin = peers.open_clip_twin(clip).to(device)
    size = clip.image_size
    images = torch.randn(cfg.batch_size, 3, size, size, generator=gen).to(device)
    tokens = to_device(batch[1], device)
    theirs = peers.open_clip_loop_step(twin, images, tokens, cfg.lr)
    times: dict[str, list[float]] = {"mmkit": [], "open_clip": []}
    ours(), theirs()  # warm-up
    for i in range(pairs):  # adjacent in time; which goes first alternates
        order = (("mmkit", ours), ("open_clip", theirs))
        for name, step in order if i % 2 == 0 else order[::-1]:
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - start)
    rates = {name: cfg.batch_size / median(t) for name, t in times.items()}
    # the median of each pair's ratio: a load that changes during the run moves both steps
    ratio = median([b / a for a, b in zip(times["mmkit"], times["open_clip"], strict=True)])
    return {
        "items_per_second": {
            "clip_lite_step": round(rates["mmkit"], 2),
            "open_clip_loop_step": round(rates["open_clip"], 2),
        },
        "ratio": round(ratio, 3),
    }


SUITES = {"audio": bench_audio, "video": bench_video, "mm": bench_mm}
