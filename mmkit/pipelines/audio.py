"""Audio classification: decode (soundfile) -> int16 store -> [wave augment] -> log-mel ->
[SpecAugment] -> backbone (a waveform backbone, such as ``hubert_base``, takes the waveform
itself). ``prepare``/``train``/``evaluate``/``infer`` are the shared classification pipeline
with :class:`AudioModality` plugged in.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mmkit.configs import AudioConfig
from mmkit.data.epochs import EpochDataset
from mmkit.data.records import SourceData
from mmkit.data.store import Store
from mmkit.errors import MediaError
from mmkit.io.audio import (
    AUDIO_EXTENSIONS,
    from_int16,
    iter_windows,
    load_audio,
    pad_or_crop,
    stream_audio,
    to_int16,
)
from mmkit.io.files import path_exists
from mmkit.pipelines import classify
from mmkit.registry import BACKBONES, create_preprocessor
from mmkit.seeds import item_seed


def _split_fragment(source: str | bytes) -> tuple[str | bytes, tuple[float, float] | None]:
    """``file.wav#t=3,4`` (a W3C media fragment) -> (``file.wav``, (3.0, 4.0))."""
    if isinstance(source, bytes) or "#t=" not in source or path_exists(source):
        return source, None
    path, frag = source.rsplit("#t=", 1)
    try:
        start, end = (float(x) for x in frag.split(","))
    except ValueError:  # not a start,end pair: a file name that happens to hold "#t="
        return source, None
    return path, (start, end)


class AudioModality(classify.Modality[AudioConfig]):
    name = "audio"
    extensions = AUDIO_EXTENSIONS
    decode_in_processes = True  # soundfile + resampling: Python-bound, threads would not scale
    dtype = "int16"
    shape_keys = ("sample_rate", "duration", "max_seconds", "classes")
    config_class = AudioConfig

    def store_params(self, cfg: AudioConfig) -> dict[str, Any]:
        return {"sample_rate": cfg.sample_rate, "max_seconds": cfg.max_seconds}

    def item_shape(self, params: dict[str, Any]) -> tuple[int, ...]:
        return ()

    def decode(self, source: str | bytes, params: dict[str, Any]) -> np.ndarray:
        source, span = _split_fragment(source)
        wave = load_audio(source, params["sample_rate"])
        if span is not None:
            a, b = (int(t * params["sample_rate"]) for t in span)
            wave = wave[a:b]
        wave = wave[: int(params["max_seconds"] * params["sample_rate"])]
        if wave.numel() == 0:
            raise MediaError.cannot_decode(f"{source!s:.80}", "no samples")
        return to_int16(wave).numpy()

    def extras(self, data: SourceData, params: dict[str, Any]) -> dict[str, np.ndarray]:
        """Background-noise clips (e.g. ``_background_noise_``), cut into 1 s rows for mixing."""
        sr = params["sample_rate"]
        rows = []
        for f in data.noise_files:
            try:
                wave = load_audio(f, sr)
            except MediaError:
                continue
            usable = wave[: wave.numel() // sr * sr]
            rows.append(to_int16(usable).reshape(-1, sr))
        return {"noise": torch.cat(rows).numpy()} if rows else {}

    def train_set(self, store: Store, indices: list[int], cfg: AudioConfig) -> Dataset:
        return AudioClips(store, indices, cfg.num_samples, train=True, seed=cfg.seed)

    def eval_set(self, store: Store, indices: list[int], cfg: AudioConfig) -> Dataset:
        return AudioClips(store, indices, cfg.num_samples, train=False, seed=cfg.seed)

    def stages(self, cfg: AudioConfig, store: Store) -> list[tuple[str, nn.Module]]:
        """[wave augment] -> log-mel -> [SpecAugment]; a backbone on the waveform
        (``input="waveform"``) gets the wave augmentation only."""
        stages: list[tuple[str, nn.Module]] = []
        waveform = BACKBONES.get(cfg.backbone).input == "waveform"
        if cfg.augment:
            params = dict(cfg.wave_augment)
            params["noise"] = {"snr_db": list(cfg.noise_snr), **params.get("noise", {})}
            wave_aug = create_preprocessor("wave_augment", sample_rate=cfg.sample_rate, **params)
            noise = store.extra("noise")
            if noise is not None:
                wave_aug.set_noise_bank(from_int16(torch.from_numpy(noise)))
            stages.append(("wave_augment", wave_aug))
        if waveform:
            return stages
        stages.append(("log_mel", create_preprocessor("log_mel", **cfg.log_mel_params())))
        if cfg.augment:
            stages.append(("spec_augment", create_preprocessor("spec_augment", **cfg.spec_augment)))
        return stages

    def file_views(self, path: str, cfg: AudioConfig) -> classify.Views:
        """Clips longer than the training duration are cut into half-overlapping windows."""
        batches = list(self.view_batches(path, cfg, batch_size=64))
        return torch.cat([v for v, _ in batches]), [i for _, infos in batches for i in infos]

    def view_batches(
        self, path: str, cfg: AudioConfig, batch_size: int
    ) -> Iterator[classify.Views]:
        """:meth:`file_views` ``batch_size`` views at a time, decoded block by block
        (:func:`~mmkit.io.audio.stream_audio`), so an hours-long file needs bounded memory.
        A clip no longer than the training duration is one zero-padded view without times."""
        sr, length = cfg.sample_rate, cfg.num_samples
        blocks = stream_audio(path, sr)
        head: list[torch.Tensor] = []
        seen = 0
        for block in blocks:
            head.append(block)
            seen += block.numel()
            if seen > length:
                break
        if seen <= length:
            yield pad_or_crop(torch.cat(head), length, mode="center")[None], [{}]
            return
        windows = iter_windows(itertools.chain(head, blocks), length, max(1, length // 2))
        while batch := list(itertools.islice(windows, batch_size)):
            infos = [
                {"start": round(s / sr, 3), "end": round((s + length) / sr, 3)} for s, _ in batch
            ]
            yield torch.stack([w for _, w in batch]), infos


class AudioClips(EpochDataset):
    """Fixed-length int16 clips cut from the store: a random crop (train) or the centre (eval).

    Random crops are drawn from a generator seeded by (seed, epoch, index), so they are the same
    with any number of loader workers and after ``--resume``.
    """

    def __init__(self, store: Store, indices: list[int], length: int, *, train: bool, seed: int):
        self.store, self.indices, self.length, self.train, self.seed = (
            store,
            indices,
            length,
            train,
            seed,
        )
        super().__init__()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        idx = self.indices[i]
        pcm = torch.from_numpy(np.array(self.store[idx]))
        if self.train:
            g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, idx))
            crop = pad_or_crop(pcm, self.length, mode="random", generator=g)
            return crop, int(self.store.targets[idx])
        return pad_or_crop(pcm, self.length, mode="center")[None], int(self.store.targets[idx])


MODALITY = AudioModality()


def prepare(cfg: AudioConfig, **kwargs: Any) -> Store:
    return classify.prepare(MODALITY, cfg, **kwargs)


def train(cfg: AudioConfig, **kwargs: Any) -> classify.TrainResult:
    return classify.train(MODALITY, cfg, **kwargs)


def evaluate(checkpoint: str, cfg: AudioConfig, **kwargs: Any) -> dict[str, Any]:
    return classify.evaluate(MODALITY, checkpoint, cfg, **kwargs)


def infer(paths: list[str], checkpoint: str, **kwargs: Any) -> list[dict[str, Any]]:
    return classify.infer(MODALITY, paths, checkpoint, **kwargs)
