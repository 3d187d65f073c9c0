"""A real training epoch against the model's own speed.

The epoch is :func:`mmkit.engine.run.fit` as ``train`` runs it: the prepared store, the
DataLoader with the default workers, the preprocessing stages on the device, the Trainer's step
(AMP on CUDA, clipping, scheduler, progress, metrics.jsonl and the logger), validation and
checkpoints after each epoch. The ceiling is a copy of the same model (its preprocessing stages
included: they are part of the module the Trainer steps) with the same loss and AdamW, stepping
on one synthetic batch that already sits on the device: no store, no loader, no copies.

The ceiling is measured before the first epoch and after each one, so every epoch has ceiling
numbers from minutes around it. The first epoch (workers starting, allocator warming up) is
reported apart; the last one runs beside a busy neighbour process. Other measurements that are
compared with the epoch (the peer paths) run between the epochs, for the same reason.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from mmkit.config import TrainConfig
from mmkit.engine.placement import compile_model, resolve_device, to_channels_last
from mmkit.engine.run import Job, fit
from mmkit.events import NullProgress, Progress
from mmkit.pipelines.bench.timing import busy_neighbour, median, step_rate, training_step


@dataclass(frozen=True)
class EpochPlan:
    epochs: int = 4  # the first is cold; the last runs beside a busy process when ``busy``
    ceiling_steps: int = 4  # steps per ceiling round (one round before and after each epoch)
    busy: bool = True
    between: tuple[Callable[[], None], ...] = ()  # run after the 1st, 2nd, ... warm epoch

    def with_between(self, *calls: Callable[[], None]) -> EpochPlan:
        """This plan with ``calls`` between the warm epochs (more epochs when needed)."""
        warm = self.epochs - 1 - int(self.busy)
        return replace(self, epochs=self.epochs + max(0, len(calls) + 1 - warm), between=calls)


@dataclass
class EpochNumbers:
    batch_size: int
    items_per_epoch: int = 0
    epoch_seconds: list[float] = field(default_factory=list)  # alone, after the first
    first_epoch_seconds: float = 0.0
    busy_epoch_seconds: float | None = None
    ceiling_rates: list[float] = field(default_factory=list)
    num_workers: int = 0
    run_dir: Path | None = None

    @property
    def epoch_rate(self) -> float:
        return self.items_per_epoch / median(self.epoch_seconds)

    @property
    def ceiling_rate(self) -> float:
        return median(self.ceiling_rates)

    def report(self) -> dict[str, Any]:
        rates = {
            "epoch": round(self.epoch_rate, 2),
            "first_epoch": round(self.items_per_epoch / self.first_epoch_seconds, 2),
            "ceiling": round(self.ceiling_rate, 2),
        }
        seconds = {
            "epoch": round(median(self.epoch_seconds), 3),
            "first_epoch": round(self.first_epoch_seconds, 3),
        }
        ratios = {"epoch_over_ceiling": round(self.epoch_rate / self.ceiling_rate, 3)}
        if self.busy_epoch_seconds is not None:
            seconds["epoch_beside_busy_process"] = round(self.busy_epoch_seconds, 3)
            rates["epoch_beside_busy_process"] = round(
                self.items_per_epoch / self.busy_epoch_seconds, 2
            )
            ratios["busy_over_alone_epoch_seconds"] = round(
                self.busy_epoch_seconds / median(self.epoch_seconds), 3
            )
        return {
            "items_per_second": rates,
            "seconds": seconds,
            "ratios": ratios,
            "epoch": {
                "items": self.items_per_epoch,
                "batch_size": self.batch_size,
                "num_workers": self.num_workers,
                "ceiling_rounds": [round(r, 2) for r in self.ceiling_rates],
                "epoch_seconds": [round(s, 3) for s in self.epoch_seconds],
            },
        }


def synthetic_like(value: Any, generator: torch.Generator) -> Any:
    """Random data of ``value``'s structure, shapes, dtypes and value range."""
    if isinstance(value, tuple | list):
        return type(value)(synthetic_like(v, generator) for v in value)
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_floating_point():
        return torch.randn(value.shape, generator=generator).to(value.dtype)
    low, high = int(value.min()), int(value.max()) + 1
    return torch.randint(low, high, value.shape, generator=generator, dtype=value.dtype)


def to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, tuple | list):
        return type(value)(to_device(v, device) for v in value)
    return value.to(device) if isinstance(value, torch.Tensor) else value


class _Recorder:
    """The progress the Trainer reports to (passed on to ``inner``), timing each epoch and
    running the ceiling rounds and the busy neighbour between them."""

    def __init__(self, inner: Progress, numbers: EpochNumbers, plan: EpochPlan, ceiling) -> None:
        self.inner, self.numbers, self.plan, self.ceiling = inner, numbers, plan, ceiling
        self.epoch = 0
        self._busy: contextlib.ExitStack | None = None

    def start(self, task: str, total: int | None) -> None:
        if task.startswith("epoch"):
            self.epoch += 1
            self.numbers.items_per_epoch = (total or 0) * self.numbers.batch_size
            if self.plan.busy and self.epoch == self.plan.epochs:
                self._busy = contextlib.ExitStack()
                self._busy.enter_context(busy_neighbour())
        self.inner.start(task, total)

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.inner.advance(n, **fields)

    def end(self, **summary: Any) -> None:
        self.inner.end(**summary)
        seconds = summary.get("train_seconds")
        if seconds is None:
            return
        warm = False
        if self._busy is not None:
            self._busy.close()
            self._busy = None
            self.numbers.busy_epoch_seconds = seconds
        elif self.epoch == 1:
            self.numbers.first_epoch_seconds = seconds
        else:
            self.numbers.epoch_seconds.append(seconds)
            warm = True
        self.numbers.ceiling_rates.append(self.ceiling())
        done = len(self.numbers.epoch_seconds)
        if warm and done <= len(self.plan.between):
            self.plan.between[done - 1]()

    def message(self, text: str) -> None:
        self.inner.message(text)


def measure_epochs(
    cfg: TrainConfig, job: Job, run_dir: Path, plan: EpochPlan, progress: Progress | None = None
) -> EpochNumbers:
    """Train ``job`` for ``plan.epochs`` epochs into ``run_dir`` and time them against the
    ceiling (see the module docstring)."""
    progress = progress or NullProgress()
    device = resolve_device(cfg.device)
    numbers = EpochNumbers(batch_size=cfg.batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    real = default_collate(
        [job.train_set[i] for i in range(min(cfg.batch_size, len(job.train_set)))]
    )
    batch = to_device(synthetic_like(real, gen), device)
    model = copy.deepcopy(job.model).to(device)
    if cfg.channels_last:
        to_channels_last(model)
    if cfg.compile:
        compile_model(model)
    amp = cfg.amp and device.type == "cuda"

    def loss(m: torch.nn.Module, b: Any) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return job.task.loss(m, b, device)

    step = training_step(model, loss, batch, lr=cfg.lr)

    def ceiling() -> float:
        step()  # the first step after an epoch pays for the allocator and caches
        return step_rate(step, plan.ceiling_steps, device)

    numbers.ceiling_rates.append(ceiling())
    run_cfg = replace(cfg, epochs=plan.epochs, patience=0, out=str(run_dir))
    fit(run_cfg, lambda: job, resume=False, progress=_Recorder(progress, numbers, plan, ceiling))
    from mmkit.engine.placement import loader_workers

    numbers.num_workers = loader_workers(cfg.num_workers)
    numbers.run_dir = run_dir
    return numbers
