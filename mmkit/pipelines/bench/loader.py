"""Can the data path feed a GPU? The training loader alone, without a model.

The loader is the one ``train`` builds (:class:`~mmkit.engine.placement.Loaders`: the default
workers, pinned batches on CUDA) over the job's training set, each batch moved to the device and
put through the model's training transforms (``Classifier.preprocess``: wave augment, log-mel,
SpecAugment / video crops and jitter; ``ClipPipeline.transform``: image crops), then nothing:
no backbone, no step. Its items/s are compared with

- ``loader_over_gpu_step``: the model-step rate of one H100 for the same default models
  (:data:`GPU_STEP_RATES`, given in issue 20): above 1, the loader can keep that GPU busy;
- ``loader_over_redecode_loader``: the same loader, datasets and transforms over a store whose
  every read decodes the item's media file again (:class:`Redecoding`, mmkit's own decoder),
  so the ratio is what decoding once buys.

The first epoch (workers starting) is left out; the rate is the median of the others.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from mmkit.config import TrainConfig
from mmkit.engine.placement import Loaders, resolve_device
from mmkit.engine.run import Job
from mmkit.pipelines.bench.timing import median, sync

# clips (pairs) per second of one H100 stepping the default model of each modality
GPU_STEP_RATES = {"audio": 30_400.0, "video": 11_200.0, "mm": 28_300.0}


class Redecoding:
    """A prepared store whose items are decoded from their media files on every read (the
    rest — labels, targets, extras — is the store's)."""

    def __init__(self, store: Any, sources: Sequence[Any], decode: Callable[..., Any]) -> None:
        self.store, self.sources, self.decode = store, list(sources), decode

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.decode(self.sources[i], self.store.params)

    def take(self, i: int, indices: np.ndarray) -> np.ndarray:
        return self[i][np.asarray(indices, dtype=np.int64)]


def redecoding_set(train_set: Any, records: Sequence[Any], decode: Callable[..., Any]) -> Any:
    """``train_set`` reading a :class:`Redecoding` twin of its store (``records``: the
    source's records, matched to the store's items by name)."""
    sources = {r.name: r.source for r in records}
    twin = copy.copy(train_set)
    twin.store = Redecoding(train_set.store, [sources[i.name] for i in train_set.store.items],
                            decode)  # fmt: skip
    return twin


def _transform(model: torch.nn.Module, device: torch.device) -> Callable[[Any], torch.Tensor]:
    """What the model does to a batch before its backbone, on ``device``, in train mode."""
    model = copy.deepcopy(model).to(device).train()
    if hasattr(model, "preprocess"):  # Classifier

        def classify(batch: Any) -> torch.Tensor:
            x = batch[0].to(device, non_blocking=True)
            if x.dtype == torch.int16:
                x = x.float() / 32768.0
            return model.preprocess(x)

        return classify

    def contrastive(batch: Any) -> torch.Tensor:  # ClipPipeline
        images, tokens, seeds = batch
        tokens.to(device, non_blocking=True)
        generator = torch.Generator().manual_seed(int(seeds.sum()) % 2**63)  # as the task
        return model.transform(images.to(device, non_blocking=True), generator)

    return contrastive


def loader_rate(train_set: Any, job: Job, cfg: TrainConfig, epochs: int) -> dict[str, float]:
    """Items/s of the training loader over ``train_set`` with the training transforms of
    ``job.model`` on the device, the median of ``epochs - 1`` epochs after the first."""
    device = resolve_device(cfg.device)
    run = _transform(job.model, device)
    loaders = Loaders.build(train_set, job.val_set, replace(cfg, max_steps_per_epoch=0),
                            pin=device.type == "cuda")  # fmt: skip
    seconds, items = [], 0
    with torch.no_grad():
        for epoch in range(max(2, epochs)):
            start, items = time.perf_counter(), 0
            for batch in loaders.epoch(epoch):
                run(batch)
                items += len(batch[0])
            sync(device)
            seconds.append(time.perf_counter() - start)
    del loaders  # persistent workers end with their loader
    return {"items_per_second": items / median(seconds[1:]), "items": items}


def loader_report(
    modality: str, job: Job, cfg: TrainConfig, redecode_set: Any, epochs: int = 3
) -> dict[str, Any]:
    """The loader alone against the GPU's step and against the redecoding loader."""
    ours = loader_rate(job.train_set, job, cfg, epochs)
    redecode = loader_rate(redecode_set, job, cfg, 2)
    rate = ours["items_per_second"]
    return {
        "items_per_second": {
            "loader": round(rate, 2),
            "redecode_loader": round(redecode["items_per_second"], 2),
            "gpu_step_h100": GPU_STEP_RATES[modality],
        },
        "ratios": {
            "loader_over_gpu_step": round(rate / GPU_STEP_RATES[modality], 4),
            "loader_over_redecode_loader": round(rate / redecode["items_per_second"], 3),
        },
        "loader": {"items_per_epoch": ours["items"], "timed_epochs": max(2, epochs) - 1},
    }
