"""Video classification: decode (imageio-ffmpeg) -> uint8 frame store -> frame sampling ->
video_transform (crop, normalise) -> 3D CNN / video ViT. ``prepare``, ``train``, ``evaluate`` and
``infer`` are the shared classification pipeline with :class:`VideoModality` plugged in.

The store keeps up to ``store_frames`` frames per video (evenly spread when the video has more),
resized inside ffmpeg so the short side is ``short_side`` and centre-cropped to a square. Training
samples ``frames`` frames per clip (``random``: a random clip ``frame_interval`` apart;
``uniform``: evenly over the whole video); evaluation and inference average ``num_clips`` evenly
spaced clips (``uniform``: one). ``store_format`` ``jpeg`` keeps each stored frame as a JPEG
(:mod:`~mmkit.data.frame_codec`), decoded in the loader workers, only the frames a clip samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mmkit.configs import VideoConfig
from mmkit.data.epochs import EpochDataset
from mmkit.data.frame_codec import frame_params
from mmkit.data.store import Store
from mmkit.io.video import VIDEO_EXTENSIONS, even_indices, probe, read_video
from mmkit.pipelines import classify
from mmkit.registry import create_preprocessor
from mmkit.seeds import item_seed


def _square(frames: np.ndarray) -> np.ndarray:
    """Centre-crop ``[T, H, W, 3]`` to a square on its short side."""
    _, h, w, _ = frames.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(frames[:, top : top + s, left : left + s])


def decode_frames(source: str | bytes, short_side: int, max_frames: int) -> np.ndarray:
    """Up to ``max_frames`` upright frames (evenly spread), short side scaled in ffmpeg, square."""
    total = probe(source).num_frames
    indices = even_indices(total, max_frames) if total > max_frames else None
    frames = read_video(source, size=short_side, indices=indices)
    return _square(frames)


class VideoModality(classify.Modality[VideoConfig]):
    name = "video"
    extensions = VIDEO_EXTENSIONS
    dtype = "uint8"
    shape_keys = (
        "frames",
        "size",
        "sampling",
        "frame_interval",
        "num_clips",
        "store_frames",
        "store_format",
        "fold",
    )
    config_class = VideoConfig

    def store_params(self, cfg: VideoConfig) -> dict[str, Any]:
        return {
            "short_side": cfg.short_side,
            "store_frames": cfg.store_frames,
            **frame_params(cfg.store_format),
        }

    def item_shape(self, params: dict[str, Any]) -> tuple[int, ...]:
        s = params["short_side"]
        return (s, s, 3)

    def decode(self, source: str | bytes, params: dict[str, Any]) -> np.ndarray:
        return decode_frames(source, params["short_side"], params["store_frames"])

    def train_set(self, store: Store, indices: list[int], cfg: VideoConfig) -> Dataset:
        return VideoClips(store, indices, train_sampler(cfg), seed=cfg.seed, views=False)

    def eval_set(self, store: Store, indices: list[int], cfg: VideoConfig) -> Dataset:
        return VideoClips(store, indices, eval_sampler(cfg), seed=cfg.seed, views=True)

    def stages(self, cfg: VideoConfig, store: Store) -> list[tuple[str, nn.Module]]:
        transform = create_preprocessor(
            "video_transform",
            size=cfg.size,
            short_side=cfg.short_side,
            hflip=cfg.hflip,
            crop_scale=cfg.crop_scale if cfg.augment else None,
            color_jitter=cfg.color_jitter if cfg.augment else 0.0,
            **{k: getattr(cfg, k) for k in ("mean", "std") if getattr(cfg, k) is not None},
        )
        return [("video_transform", transform)]

    def file_views(self, path: str, cfg: VideoConfig) -> classify.Views:
        """The evaluation clips of one file, ``[K, T, S, S, 3]`` uint8."""
        frames = decode_frames(path, cfg.short_side, cfg.store_frames)
        grid = eval_sampler(cfg)(len(frames))
        return torch.from_numpy(frames[grid.reshape(-1, cfg.frames).numpy()]), [{}]


def train_sampler(cfg: VideoConfig) -> Any:
    if cfg.sampling == "uniform":
        return create_preprocessor("uniform", num_frames=cfg.frames)
    return create_preprocessor(
        "random_clip", clip_len=cfg.frames, frame_interval=cfg.frame_interval
    )


def eval_sampler(cfg: VideoConfig) -> Any:
    if cfg.sampling == "uniform":
        return create_preprocessor("uniform", num_frames=cfg.frames)
    return create_preprocessor(
        "multi_clip",
        num_clips=cfg.num_clips,
        clip_len=cfg.frames,
        frame_interval=cfg.frame_interval,
    )


class VideoClips(EpochDataset):
    """Clips sampled from the frame store: ``[T, S, S, 3]`` (train) or ``[K, T, S, S, 3]`` (eval).

    The training sampler draws from a generator seeded by (seed, epoch, index), so clips are the
    same with any number of loader workers and after ``--resume``.
    """

    def __init__(
        self, store: Store, indices: list[int], sampler: Any, *, seed: int, views: bool
    ) -> None:
        self.store, self.indices, self.sampler, self.seed = store, indices, sampler, seed
        self.views = views
        super().__init__()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        idx = self.indices[i]
        g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, idx))
        order = self.sampler(self.store.items[idx].length, generator=g)
        if self.views and order.ndim == 1:
            order = order[None]
        clip = torch.from_numpy(self.store.take(idx, order.numpy()))  # jpeg: decoded here
        return clip, int(self.store.targets[idx])


MODALITY = VideoModality()


def prepare(cfg: VideoConfig, **kwargs: Any) -> Store:
    return classify.prepare(MODALITY, cfg, **kwargs)


def train(cfg: VideoConfig, **kwargs: Any) -> classify.TrainResult:
    return classify.train(MODALITY, cfg, **kwargs)


def evaluate(checkpoint: str, cfg: VideoConfig, **kwargs: Any) -> dict[str, Any]:
    return classify.evaluate(MODALITY, checkpoint, cfg, **kwargs)


def infer(paths: list[str], checkpoint: str, **kwargs: Any) -> list[dict[str, Any]]:
    return classify.infer(MODALITY, paths, checkpoint, **kwargs)
