"""Where and how a model and its data run: the device, the model placed on it (channels-last
weights, ``torch.compile``, DDP), the DataLoaders and their workers, and seeding every RNG a run
draws from."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from mmkit.config import TrainConfig
from mmkit.data.epochs import EpochSampler
from mmkit.engine import distributed
from mmkit.errors import UserInputError
from mmkit.seeds import epoch_seed


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError("--device cuda was asked for but CUDA is not available")
    return torch.device(name)


MAX_AUTO_WORKERS = 4


def loader_workers(num_workers: int | None) -> int:
    """DataLoader worker processes: ``num_workers`` when given, else one per two cores this
    process may use, at least 1 and at most :data:`MAX_AUTO_WORKERS`. The store's items are
    array slices, so few workers keep a step fed; each one is a process beside the training
    threads, so on a small machine they must stay few."""
    if num_workers is not None:
        return num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_AUTO_WORKERS, (cores or 1) // 2))


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Conv weights in channels-last order (4-D ``channels_last``, 5-D ``channels_last_3d``),
    so oneDNN / cuDNN run their channels-last kernels; other parameters are left alone."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for param in model.parameters():
        if param.dim() in formats:
            param.data = param.data.contiguous(memory_format=formats[param.dim()])
    return model


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` the model's compute in place (``Module.compile``: the parameters and
    the state_dict keys stay as they are). A model names the child to compile in
    ``compile_scope`` (e.g. its backbone): preprocessing that draws its augmentation on the host
    or calls kernels dynamo cannot trace (torchaudio's IIR filter) stays eager."""
    scope = getattr(model, "compile_scope", None)
    (getattr(model, scope) if scope else model).compile()
    return model


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def place_model(
    model: torch.nn.Module, device: torch.device, cfg: TrainConfig
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model on ``device`` (channels-last weights with ``cfg.channels_last``, compiled with
    ``cfg.compile``: :func:`to_channels_last`, :func:`compile_model`) and the module to train:
    the model itself, or its DDP wrapper when this process is one of several ranks of a joined
    process group."""
    model = model.to(device)
    if cfg.channels_last:
        to_channels_last(model)
    if cfg.compile:
        compile_model(model)
    if distributed.world() <= 1:
        return model, model
    ids = [device.index] if device.type == "cuda" else None
    return model, torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


@dataclass
class Loaders:
    """A run's train and validation loaders.

    Workers (:func:`loader_workers`) are persistent, and batches are pinned on CUDA so the copies
    to the device overlap compute. Workers draw their seeds from the train loader's own
    generator, never the global RNG, and datasets draw their augmentation from (seed, epoch,
    item), so the stream is the same with any number of workers and with or without a resume
    in between. Validation is sharded across ranks (the task gathers its outputs back)."""

    train: DataLoader
    val: DataLoader
    sampler: EpochSampler
    generator: torch.Generator
    seed: int
    steps_per_epoch: int  # batches per epoch (at most ``max_steps_per_epoch``), at least 1

    @classmethod
    def build(
        cls,
        train_set: Dataset,
        val_set: Dataset,
        cfg: TrainConfig,
        *,
        pin: bool,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> Loaders:
        rank, world = distributed.rank(), distributed.world()
        workers = loader_workers(cfg.num_workers)
        common = dict(
            batch_size=cfg.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
            collate_fn=collate_fn,
        )
        sampler = EpochSampler(len(train_set), seed=cfg.seed, shuffle=True, rank=rank, world=world)
        generator = torch.Generator()
        drop_last = len(train_set) >= 2 * cfg.batch_size * world
        train = DataLoader(
            train_set, sampler=sampler, drop_last=drop_last, generator=generator, **common
        )
        val = DataLoader(
            val_set,
            sampler=distributed.shard(range(len(val_set))),
            generator=torch.Generator().manual_seed(cfg.seed),
            **common,
        )
        steps = min(len(train), cfg.max_steps_per_epoch or len(train))
        return cls(train, val, sampler, generator, cfg.seed, max(1, steps))

    def epoch(self, epoch: int, start_step: int = 0) -> DataLoader:
        """The train loader set to ``epoch`` from batch ``start_step`` on: the dataset's
        augmentation, the sampler's order and the workers' seeds all follow (seed, epoch)."""
        set_epoch = getattr(self.train.dataset, "set_epoch", None)
        if set_epoch:
            set_epoch(epoch)
        self.sampler.set_epoch(epoch, start_step * (self.train.batch_size or 1))
        self.generator.manual_seed(epoch_seed(self.seed, epoch))
        return self.train
