"""The one training loop, for every modality.

AdamW with linear warmup + cosine decay, gradient clipping, bf16 autocast on CUDA, early stopping on
the task's validation metric, ``best/`` and ``last/`` checkpoints written atomically, exact resume
(epoch, step inside the epoch, optimizer, scheduler, RNG), ``metrics.jsonl`` and a curves PNG.
Under ``torchrun`` it runs DDP: each rank trains on its shard, rank 0 evaluates and writes.

What is modality-specific lives in the :class:`Task` (how a batch becomes a loss, how to evaluate).
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from mmkit.config import TrainConfig
from mmkit.data.epochs import EpochSampler
from mmkit.engine import distributed
from mmkit.engine.checkpoint import load_resume_state, rng_states, save_checkpoint
from mmkit.engine.events import NullProgress, Progress
from mmkit.engine.loggers import NoLogger, make_logger
from mmkit.engine.placement import compile_model, loader_workers, resolve_device, to_channels_last
from mmkit.errors import CheckpointError, MmkitError, TrainingInterrupted
from mmkit.io.atomic import write_text_atomic
from mmkit.seeds import epoch_seed


class Task(Protocol):
    """What the loop needs from a task (classification, contrastive, ...)."""

    monitor: str  # validation metric to maximise, e.g. "accuracy"

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor: ...

    def evaluate(
        self, model: torch.nn.Module, loader: DataLoader, device: torch.device
    ) -> dict[str, float]: ...


LOG_EVERY = 20  # steps between host syncs of the running loss (and its finiteness check)


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    epochs: int
    best_metric: dict[str, float]
    history: list[dict[str, Any]]
    skipped: list[dict[str, str]] = field(default_factory=list)  # files the data step left out

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "best_checkpoint": str(self.best_checkpoint),
            "epochs": self.epochs,
            "best_metric": self.best_metric,
            "skipped": self.skipped,
        }


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _scheduler(opt: torch.optim.Optimizer, total: int, warmup: int) -> Any:
    warmup = max(1, warmup)
    sched = torch.optim.lr_scheduler
    return sched.SequentialLR(
        opt,
        [
            sched.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=warmup),
            sched.CosineAnnealingLR(opt, T_max=max(1, total - warmup), eta_min=0.0),
        ],
        milestones=[warmup],
    )


class Trainer:
    """Runs ``task`` on ``model`` over the two datasets and writes ``run_dir``."""

    def __init__(
        self,
        model: torch.nn.Module,
        task: Task,
        train_set: Dataset,
        val_set: Dataset,
        cfg: TrainConfig,
        run_dir: str | Path,
        *,
        checkpoint_config: Callable[[], dict[str, Any]],
        progress: Progress | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.cfg, self.task = cfg, task
        self.run_dir = Path(run_dir)
        self.progress = progress or NullProgress()
        self.checkpoint_config = checkpoint_config
        self.train_set = train_set
        self._join_process_group()
        self._place_model(model)
        self._build_loaders(train_set, val_set, collate_fn)
        self._build_optimizer()
        self._stop = _StopOnSignal()
        self.state: dict[str, Any] = {
            "epoch": 0,
            "step_in_epoch": 0,
            "global_step": 0,
            "best": None,
            "best_loss": None,
            "best_epoch": -1,
            "bad_epochs": 0,
            "epoch_loss_sum": 0.0,
            "history": [],
        }

    # -- set-up steps ------------------------------------------------------------------------
    def _join_process_group(self) -> None:
        """Under ``torchrun``: join the process group and take this rank's device."""
        self.device = distributed.init(resolve_device(self.cfg.device))
        self.rank, self.world = distributed.rank(), distributed.world()
        self.use_amp = self.cfg.amp and self.device.type == "cuda"
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)

    def _place_model(self, model: torch.nn.Module) -> None:
        """The model on this rank's device (channels-last with ``cfg.channels_last``, compiled
        with ``cfg.compile``: :func:`compile_model`), wrapped in DDP when there are several
        ranks."""
        self.model = model.to(self.device)
        if self.cfg.channels_last:
            to_channels_last(self.model)
        if self.cfg.compile:
            compile_model(self.model)
        self.ddp_model: torch.nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _build_loaders(
        self, train_set: Dataset, val_set: Dataset, collate_fn: Callable[[list[Any]], Any] | None
    ) -> None:
        """Train and validation loaders. Workers (:func:`loader_workers`) are persistent, and
        batches are pinned on CUDA so the copies to the device overlap compute. Workers draw
        their seeds from the loader's own generator, never the global RNG, and datasets draw
        their augmentation from (seed, epoch, item), so the stream is the same with any number
        of workers and with or without a resume in between."""
        cfg, pin = self.cfg, self.device.type == "cuda"
        workers = loader_workers(cfg.num_workers)
        self.num_workers = workers
        self.sampler = EpochSampler(
            len(train_set), seed=cfg.seed, shuffle=True, rank=self.rank, world=self.world
        )
        self.loader_generator = torch.Generator()
        self.train_loader = DataLoader(
            train_set,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
            drop_last=len(train_set) >= 2 * cfg.batch_size * self.world,
            collate_fn=collate_fn,
            generator=self.loader_generator,
        )
        self.val_loader = DataLoader(
            val_set,
            batch_size=cfg.batch_size,
            sampler=distributed.shard(range(len(val_set))),  # gathered back by the task
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
            collate_fn=collate_fn,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        steps = len(self.train_loader)
        if cfg.max_steps_per_epoch:
            steps = min(steps, cfg.max_steps_per_epoch)
        self.steps_per_epoch = max(1, steps)
        self.total_steps = self.steps_per_epoch * cfg.epochs

    def _build_optimizer(self) -> None:
        """AdamW (no decay on biases and norms) with linear warmup then cosine decay."""
        cfg = self.cfg
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, cfg.weight_decay), lr=cfg.lr)
        self.scheduler = _scheduler(
            self.optimizer, self.total_steps, int(cfg.warmup * self.total_steps)
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- checkpoints -------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from ``run_dir/last`` exactly where it stopped."""
        last = self.run_dir / "last"
        rs = load_resume_state(last, rank=self.rank)
        saved_world = rs.trainer_state.pop("world", 1)
        if saved_world != self.world:
            self.progress.message(
                f"resuming a {saved_world}-process run with {self.world}: the data order "
                "differs from an uninterrupted run from here on"
            )
        from mmkit.engine.checkpoint import load_weights

        load_weights(self.model, last, self.device)
        try:
            self.optimizer.load_state_dict(rs.optimizer_state)
            self.scheduler.load_state_dict(rs.trainer_state.pop("scheduler"))
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(
                f"{last}: the saved optimizer/scheduler state does not fit this run ({reason})"
            ) from exc
        self.state.update(rs.trainer_state)
        if self.is_main:  # rows of epochs after `last` (a kill before it was saved) go away
            rows = "".join(json.dumps(r) + "\n" for r in self.state["history"])
            write_text_atomic(self.run_dir / "metrics.jsonl", rows)

    def _save(self, name: str, metrics: dict[str, Any] | None = None) -> None:
        """Write ``best``/``last`` (rank 0). Every rank calls it: each one's RNG state is
        gathered into ``last`` so a resumed DDP run continues exactly."""
        rng = rng_states() if name == "last" else {}
        if not self.is_main:
            return
        config = dict(self.checkpoint_config(), metrics=metrics or {}, epoch=self.state["epoch"])
        state = dict(self.state, world=self.world, scheduler=self.scheduler.state_dict())
        save_checkpoint(
            self.run_dir / name,
            self.model,
            config,
            optimizer=self.optimizer if name == "last" else None,
            trainer_state=state if name == "last" else None,
            rng=rng,
        )

    # -- loop --------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train to the end (or early stop). Ctrl-C / SIGTERM finish the current step, save
        ``last/`` and raise :class:`TrainingInterrupted`; ``--resume`` continues from there."""
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logger = (
            make_logger(self.cfg.logger, self.run_dir, self.state["history"])
            if self.is_main
            else NoLogger()
        )
        with _StopOnSignal() as stop, closing(self.logger):
            self._stop = stop
            self._stopping = False
            while self.state["epoch"] < self.cfg.epochs and not self._stopped_early():
                self._train_epoch()
                if self._stopping:
                    break
                self._end_epoch()
        if self._stopping:
            self._save("last")
            raise TrainingInterrupted(
                f"interrupted at epoch {self.state['epoch'] + 1}, step "
                f"{self.state['step_in_epoch']}; continue with --resume (state in "
                f"{self.run_dir / 'last'})"
            )
        distributed.barrier()
        return TrainResult(
            self.run_dir,
            self.run_dir / "best",
            self.run_dir / "last",
            self.state["epoch"],
            {self.task.monitor: self.state["best"]} if self.state["best"] is not None else {},
            self.state["history"],
        )

    def _stopped_early(self) -> bool:
        return self.cfg.patience > 0 and self.state["bad_epochs"] >= self.cfg.patience

    def _train_epoch(self) -> None:
        epoch, start = self.state["epoch"], self.state["step_in_epoch"]
        set_epoch = getattr(self.train_set, "set_epoch", None)
        if set_epoch:
            set_epoch(epoch)
        self.sampler.set_epoch(epoch, start * self.cfg.batch_size)
        self.loader_generator.manual_seed(epoch_seed(self.cfg.seed, epoch))
        self.ddp_model.train()
        self.progress.start(f"epoch {epoch + 1}/{self.cfg.epochs}", self.steps_per_epoch)
        if start:
            self.progress.advance(start)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)  # summed on the device: no per-step sync
        synced = self.state["step_in_epoch"]  # steps already counted in epoch_loss_sum
        for batch in self.train_loader:
            (self._stopping,) = distributed.any_rank(self._stop.requested)
            if self.state["step_in_epoch"] >= self.steps_per_epoch or self._stopping:
                break
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
                loss = self.task.loss(self.ddp_model, batch, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach().float()
            self.state["step_in_epoch"] += 1
            self.state["global_step"] += 1
            if self.state["step_in_epoch"] % LOG_EVERY and self.state["step_in_epoch"] < (
                self.steps_per_epoch
            ):
                self.progress.advance(1)
                continue
            synced = self._sync_loss(loss_sum, synced)
            loss_sum.zero_()
            mean = self.state["epoch_loss_sum"] / self.state["step_in_epoch"]
            self.progress.advance(1, loss=mean, lr=self.scheduler.get_last_lr()[0])
        self._sync_loss(loss_sum, synced)
        (self._stopping,) = distributed.any_rank(self._stop.requested)  # asked on the last step
        mean = self.state["epoch_loss_sum"] / max(1, self.state["step_in_epoch"])
        self._epoch_train = {"train_loss": mean, "train_seconds": time.perf_counter() - t0}

    def _sync_loss(self, loss_sum: torch.Tensor, synced: int) -> int:
        """Fold the device-side loss sum into the state (one host sync); stop every rank on a
        non-finite loss. Returns the step count now synced."""
        if self.state["step_in_epoch"] == synced:
            return synced
        value = float(loss_sum)
        (bad,) = distributed.any_rank(not math.isfinite(value))
        if bad:
            raise MmkitError(
                f"the loss became {value} by step {self.state['global_step']}; "
                "lower --lr or check the data"
            )
        self.state["epoch_loss_sum"] += value
        return self.state["step_in_epoch"]

    def _improves(self, value: float, loss: float | None) -> bool:
        """Better on the monitored metric, or equal to the best with a lower validation loss: a
        small in-distribution validation set reads 1.0 accuracy for many epochs, and the first
        of them is rarely the model that generalises best."""
        best, best_loss = self.state["best"], self.state.get("best_loss")
        if best is None or value > best:
            return True
        return value == best and loss is not None and (best_loss is None or loss < best_loss)

    def _end_epoch(self) -> None:
        """Validate (each rank its shard; the task gathers the outputs, so every rank gets the
        same metrics and takes the same early-stopping decision), then rank 0 writes."""
        self.ddp_model.eval()
        with torch.no_grad():
            metrics = self.task.evaluate(self.model, self.val_loader, self.device)
        self.state["epoch"] += 1
        self.state["step_in_epoch"] = 0
        self.state["epoch_loss_sum"] = 0.0
        row = {
            "epoch": self.state["epoch"],
            **self._epoch_train,
            **{f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
        }
        self.progress.end(**row)
        value = metrics[self.task.monitor]
        improved = self._improves(value, metrics.get("loss"))
        if improved:
            self.state.update(
                best=value,
                best_loss=metrics.get("loss"),
                best_epoch=self.state["epoch"],
                bad_epochs=0,
            )
        else:
            self.state["bad_epochs"] += 1
        self.state["history"].append(row)
        if self.is_main:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            self.logger.log(row)
        if improved:
            self._save("best", metrics)
        self._save("last", metrics)
        if self.is_main:
            from mmkit.engine.plots import plot_curves

            plot_curves(self.state["history"], self.run_dir / "curves.png", self.task.monitor)


class _StopOnSignal:
    """While training, the first SIGINT/SIGTERM asks the loop to stop at the next step boundary
    (so ``last/`` is consistent); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopOnSignal:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
