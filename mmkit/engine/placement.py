"""Where and how a model runs: the device, DataLoader workers, channels-last weights,
``torch.compile``, and seeding every RNG a run draws from."""

from __future__ import annotations

import os

import torch

from mmkit.errors import UserInputError


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
