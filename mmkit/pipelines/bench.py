"""``mmkit bench``: throughput of each stage, measured in one run, reported as ratios.

The question it answers: is training fed fast enough? It times (1) decoding media per sample, the
way a naive loader would, (2) reading the prepared store, (3) on-device preprocessing and (4) a
model training step, on the embedded example data. Absolute numbers depend on the machine; the
ratios between stages measured in the same run are what to compare.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmkit.engine.trainer import resolve_device
from mmkit.errors import UserInputError


def _rate(fn: Callable[[], int], seconds: float, sync: Callable[[], None]) -> float:
    """Items per second of ``fn`` (which returns how many items it did), after one warm-up call."""
    fn()
    sync()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += fn()
    sync()
    return done / (time.perf_counter() - start)


def _train_step(backbone: str, x: torch.Tensor, num_classes: int) -> Callable[[], int]:
    """One classifier optimisation step on the fixed batch ``x`` (returns the batch size)."""
    from mmkit.registry import create_backbone

    model = create_backbone(backbone, num_classes=num_classes).to(x.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    target = torch.zeros(len(x), dtype=torch.long, device=x.device)

    def step() -> int:
        loss = torch.nn.functional.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return len(x)

    return step


def bench_audio(device: torch.device, seconds: float, batch: int = 64) -> dict[str, Any]:
    from mmkit.data.store import Store
    from mmkit.pipelines import audio
    from mmkit.pipelines.demo import examples_dir
    from mmkit.registry import create_preprocessor

    data = examples_dir() / "audio" / "data"
    files = sorted(data.rglob("*.flac"))
    if not files:
        raise UserInputError(f"no example audio in {data}; run examples/audio/make_data.py")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = audio.AudioConfig(dataset=str(data))
    with tempfile.TemporaryDirectory() as tmp:
        store: Store = audio.prepare(cfg, out=Path(tmp) / "store")
        clips = audio.AudioClips(
            store, list(range(len(store))), cfg.num_samples, train=True, seed=0
        )
        cursor = iter(range(10**9))

        def decode() -> int:
            i = next(cursor) % len(files)
            audio.MODALITY.decode(str(files[i]), store.params)
            return 1

        def read_store() -> int:
            i = next(cursor) % len(clips)
            clips[i]
            return 1

        pcm = torch.stack([clips[i % len(clips)][0] for i in range(batch)])
        pcm = pcm.pin_memory() if device.type == "cuda" else pcm
        log_mel = create_preprocessor("log_mel", **cfg.log_mel_params()).to(device)

        def features() -> int:
            with torch.no_grad():
                log_mel(pcm.to(device, non_blocking=True).float() / 32768)
            return batch

        spec = log_mel(pcm.to(device).float() / 32768)
        step = _train_step("audio_cnn", spec, len(store.labels))

        rates = {
            "decode_per_sample": _rate(decode, seconds, sync),
            "prepared_store_read": _rate(read_store, seconds, sync),
            "log_mel_on_device": _rate(features, seconds, sync),
            "audio_cnn_train_step": _rate(step, seconds, sync),
        }
    return _report("audio", rates, device)


def bench_mm(device: torch.device, seconds: float, batch: int = 64) -> dict[str, Any]:
    """Images: decode + resize per sample vs the prepared store vs ``image_transform`` on the
    device vs a train step of the demo's image-text model."""
    from mmkit.config import build_config
    from mmkit.losses import ContrastiveLoss
    from mmkit.pipelines import mm
    from mmkit.pipelines.demo import examples_dir
    from mmkit.pipelines.mm_store import decode_image
    from mmkit.tasks.contrastive import CaptionPairs, create_pipeline

    example = examples_dir() / "mm"
    manifest = example / "data" / "captions.csv"
    if not manifest.is_file():
        raise UserInputError(f"no example images in {manifest.parent}; run {example}/make_data.py")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = build_config(mm.MMConfig, example / "demo.yaml", {"dataset": str(manifest)})
    name, kwargs = mm.model_spec(cfg)
    pipeline, spec = create_pipeline(name, kwargs, crop_scale=cfg.crop_scale)
    params = spec["data"]["params"]
    with tempfile.TemporaryDirectory() as tmp:
        store = mm.prepare(cfg, params=params, out=Path(tmp) / "store")
        pairs = CaptionPairs(store, list(range(len(store))), seed=0)
        files = sorted((manifest.parent / "images").iterdir())
        cursor = iter(range(10**9))

        def decode() -> int:
            decode_image(str(files[next(cursor) % len(files)]), params)
            return 1

        def read_store() -> int:
            pairs[next(cursor) % len(pairs)]
            return 1

        items = [pairs[i % len(pairs)] for i in range(batch)]
        pixels = torch.stack([image for image, _, _ in items])
        pixels = pixels.pin_memory() if device.type == "cuda" else pixels
        tokens = torch.stack([t for _, t, _ in items]).to(device)
        pipeline = pipeline.to(device).train()

        def transform() -> int:
            with torch.no_grad():
                pipeline.transform(pixels.to(device, non_blocking=True))
            return batch

        loss_fn = ContrastiveLoss()
        opt = torch.optim.AdamW(pipeline.parameters(), lr=1e-4)
        on_device = pixels.to(device)

        def step() -> int:
            loss = loss_fn(*pipeline(on_device, tokens))
            opt.zero_grad()
            loss.backward()
            opt.step()
            return batch

        rates = {
            "decode_per_sample": _rate(decode, seconds, sync),
            "prepared_store_read": _rate(read_store, seconds, sync),
            "image_transform_on_device": _rate(transform, seconds, sync),
            f"{name}_train_step": _rate(step, seconds, sync),
        }
    return _report("mm", rates, device)


def bench_video(device: torch.device, seconds: float, batch: int = 16) -> dict[str, Any]:
    """Videos: ffmpeg decode per sample vs clips from the frame store vs ``video_transform`` on
    the device vs a ``video_r3d`` train step (16 frames, 64x64 crops)."""
    from mmkit.pipelines import video
    from mmkit.pipelines.demo import examples_dir
    from mmkit.registry import create_preprocessor

    data = examples_dir() / "video" / "data"
    files = sorted(data.rglob("*.mp4"))
    if not files:
        raise UserInputError(f"no example videos in {data}; run examples/video/make_data.py")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = video.VideoConfig(dataset=str(data), frames=16, size=64)
    with tempfile.TemporaryDirectory() as tmp:
        store = video.prepare(cfg, out=Path(tmp) / "store")
        clips = video.MODALITY.train_set(store, list(range(len(store))), cfg)
        cursor = iter(range(10**9))

        def decode() -> int:
            video.MODALITY.decode(str(files[next(cursor) % len(files)]), store.params)
            return 1

        def read_store() -> int:
            clips[next(cursor) % len(clips)]
            return 1

        frames = torch.stack([clips[i % len(clips)][0] for i in range(batch)])
        frames = frames.pin_memory() if device.type == "cuda" else frames
        transform = create_preprocessor("video_transform", size=cfg.size).to(device).train()

        def preprocess() -> int:
            with torch.no_grad():
                transform(frames.to(device, non_blocking=True))
            return batch

        step = _train_step("video_r3d", transform(frames.to(device)), len(store.labels))

        rates = {
            "decode_per_sample": _rate(decode, seconds, sync),
            "prepared_store_read": _rate(read_store, seconds, sync),
            "video_transform_on_device": _rate(preprocess, seconds, sync),
            "video_r3d_train_step": _rate(step, seconds, sync),
        }
    return _report("video", rates, device)


def _report(name: str, rates: dict[str, float], device: torch.device) -> dict[str, Any]:
    step = rates[next(k for k in rates if k.endswith("train_step"))]
    return {
        "modality": name,
        "device": str(device),
        "items_per_second": {k: round(v, 1) for k, v in rates.items()},
        "ratio_to_train_step": {k: round(v / step, 2) for k, v in rates.items()},
    }


BENCHES: dict[str, Callable[[torch.device, float], dict[str, Any]]] = {"audio": bench_audio}
BENCHES["mm"] = bench_mm
BENCHES["video"] = bench_video


def run_bench(
    modalities: list[str] | None = None, device: str = "auto", seconds: float = 2.0
) -> list[dict[str, Any]]:
    """Run the benchmarks; a ratio above 1 means that stage outpaces the training step."""
    dev = resolve_device(device)
    names = modalities or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise UserInputError(f"no benchmark for {unknown}; available: {', '.join(BENCHES)}")
    return [BENCHES[n](dev, seconds) for n in names]
