"""The one training loop, for every modality.

AdamW with linear warmup + cosine decay, gradient clipping, bf16 autocast on CUDA, early stopping
(:mod:`~mmkit.engine.tracker`), atomic ``best/`` and ``last/`` checkpoints, exact resume (epoch,
step, optimizer, scheduler, RNG), ``metrics.jsonl`` and a curves PNG. Under ``torchrun`` it runs
DDP: each rank trains on its shard, rank 0 evaluates and writes.

What is modality-specific lives in the :class:`Task` (how a batch becomes a loss, how to evaluate).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from mmkit import distributed
from mmkit.config import TrainConfig
from mmkit.engine.checkpoint import load_resume_state, rng_states, save_checkpoint
from mmkit.engine.loggers import RunLog
from mmkit.engine.optim import make_optimizer
from mmkit.engine.placement import Loaders, place_model
from mmkit.engine.signals import StopOnSignal
from mmkit.engine.state import TrainerState, TrainResult
from mmkit.engine.tracker import early_stopping
from mmkit.errors import CheckpointError, MmkitError, TrainingInterrupted
from mmkit.events import NullProgress, Progress
from mmkit.io.checkpoint_dir import load_weights, read_spec
from mmkit.spec import CheckpointSpec


class Task(Protocol):
    """What the loop needs from a task (classification, contrastive, ...)."""

    monitor: str  # validation metric to maximise, e.g. "accuracy"

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor: ...

    def evaluate(
        self, model: torch.nn.Module, loader: DataLoader, device: torch.device
    ) -> dict[str, float]: ...


LOG_EVERY = 20  # steps between host syncs of the running loss (and its finiteness check)


class Trainer:
    """Runs ``task`` on ``model`` over the two datasets on ``device`` and writes ``run_dir``,
    whose checkpoints are ``spec`` with their metrics and epoch. Under ``torchrun`` the caller
    has joined the process group and passes this rank's device (:func:`~mmkit.engine.run.fit`
    does)."""

    def __init__(
        self,
        model: torch.nn.Module,
        task: Task,
        train_set: Dataset,
        val_set: Dataset,
        cfg: TrainConfig,
        run_dir: str | Path,
        *,
        spec: CheckpointSpec,
        device: torch.device,
        progress: Progress | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.cfg, self.task, self.spec, self.device = cfg, task, spec, device
        self.run_dir = Path(run_dir)
        self.progress = progress or NullProgress()
        self.rank, self.world = distributed.rank(), distributed.world()
        self.use_amp = cfg.amp and device.type == "cuda"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.model, self.ddp_model = place_model(model, device, cfg)
        pin = device.type == "cuda"  # pinned batches: host-to-device copies overlap compute
        self.loaders = Loaders.build(train_set, val_set, cfg, pin=pin, collate_fn=collate_fn)
        total_steps = self.loaders.steps_per_epoch * cfg.epochs
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg, total_steps)
        self._stop = StopOnSignal()
        self.state = TrainerState(world=self.world)
        self.patience = early_stopping(cfg.patience, len(val_set), self.progress)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- checkpoints -------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from ``run_dir/last`` exactly where it stopped."""
        last = self.run_dir / "last"
        rs = load_resume_state(last, rank=self.rank)
        saved = rs.trainer_state
        if saved.world != self.world:
            batch = read_spec(last).train.get("batch_size")
            steps = self.loaders.steps_per_epoch
            note = saved.check_world(last, batch, self.cfg.batch_size, self.world, steps)
            self.progress.message(note)
        load_weights(self.model, last, self.device)
        try:
            self.optimizer.load_state_dict(rs.optimizer_state)
            self.scheduler.load_state_dict(saved.scheduler)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(
                f"{last}: the saved optimizer/scheduler state does not fit this run ({reason})"
            ) from exc
        self.state = replace(saved, world=self.world, scheduler={})

    def _save(self, name: str, metrics: dict[str, Any] | None = None) -> None:
        """Write ``best``/``last`` (rank 0). Every rank calls it: each one's RNG state is
        gathered into ``last`` so a resumed DDP run continues exactly."""
        last = name == "last"
        rng = rng_states() if last else {}
        if not self.is_main:
            return
        state = replace(self.state, scheduler=self.scheduler.state_dict())
        spec = self.spec.with_results(metrics or {}, self.state.epoch)
        save_checkpoint(
            self.run_dir / name,
            self.model,
            spec,
            optimizer=self.optimizer if last else None,
            trainer_state=state if last else None,
            rng=rng,
        )

    # -- loop --------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train to the end (or early stop). Ctrl-C / SIGTERM finish the current step, save
        ``last/`` and raise :class:`TrainingInterrupted`; ``--resume`` continues from there."""
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.run_dir, self.cfg.logger, self.state.history, main=self.is_main)
        lost = distributed.failures(self._after_lost)
        with lost, StopOnSignal() as stop, closing(self.log):
            self._stop = stop
            self._stopping = False
            tracker = self.state.tracker
            while self.state.epoch < self.cfg.epochs and not tracker.exhausted(self.patience):
                self._train_epoch()
                if self._stopping:
                    break
                self._end_epoch()
        if self._stopping:
            self._save("last")
            raise TrainingInterrupted(
                f"interrupted at epoch {self.state.epoch + 1}, step "
                f"{self.state.step_in_epoch}; continue with --resume (state in "
                f"{self.run_dir / 'last'})"
            )
        distributed.barrier()
        return TrainResult(
            self.run_dir,
            self.run_dir / "best",
            self.run_dir / "last",
            self.state.epoch,
            self.state.tracker.best_metric(self.task.monitor),
            self.state.history,
        )

    def _after_lost(self) -> str:
        """What the one line of a lost torchrun peer adds: how to continue."""
        if (self.run_dir / "last").is_dir():
            return f"; continue with --resume (from {self.run_dir / 'last'})"
        return "; no last/ was saved yet: start the run again"

    def _train_epoch(self) -> None:
        epoch, start = self.state.epoch, self.state.step_in_epoch
        steps = self.loaders.steps_per_epoch
        loader = self.loaders.epoch(epoch, start)
        self.ddp_model.train()
        self.progress.start(f"epoch {epoch + 1}/{self.cfg.epochs}", steps)
        if start:
            self.progress.advance(start)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)  # summed on the device: no per-step sync
        synced = self.state.step_in_epoch  # steps already counted in epoch_loss_sum
        for batch in loader:
            (self._stopping,) = distributed.any_rank(self._stop.requested)
            if self.state.step_in_epoch >= steps or self._stopping:
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
            self.state.step_in_epoch += 1
            self.state.global_step += 1
            if self.state.step_in_epoch % LOG_EVERY and self.state.step_in_epoch < steps:
                self.progress.advance(1)
                continue
            synced = self._sync_loss(loss_sum, synced)
            loss_sum.zero_()
            mean = self.state.epoch_loss_sum / self.state.step_in_epoch
            self.progress.advance(1, loss=mean, lr=self.scheduler.get_last_lr()[0])
        self._sync_loss(loss_sum, synced)
        (self._stopping,) = distributed.any_rank(self._stop.requested)  # asked on the last step
        mean = self.state.epoch_loss_sum / max(1, self.state.step_in_epoch)
        self._epoch_train = {"train_loss": mean, "train_seconds": time.perf_counter() - t0}

    def _sync_loss(self, loss_sum: torch.Tensor, synced: int) -> int:
        """Fold the device-side loss sum into the state (one host sync); stop every rank on a
        non-finite loss. Returns the step count now synced."""
        if self.state.step_in_epoch == synced:
            return synced
        value = float(loss_sum)
        (bad,) = distributed.any_rank(not math.isfinite(value))
        if bad:
            raise MmkitError(
                f"the loss became {value} by step {self.state.global_step}; "
                "lower --lr or check the data"
            )
        self.state.epoch_loss_sum += value
        return self.state.step_in_epoch

    def _end_epoch(self) -> None:
        """Validate (each rank its shard; the task gathers the outputs, so every rank gets the
        same metrics and takes the same early-stopping decision), then rank 0 writes."""
        self.ddp_model.eval()
        with torch.no_grad():
            metrics = self.task.evaluate(self.model, self.loaders.val, self.device)
        self.state.epoch += 1
        self.state.step_in_epoch, self.state.epoch_loss_sum = 0, 0.0
        row = {
            "epoch": self.state.epoch,
            **self._epoch_train,
            **{f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
        }
        self.progress.end(**row)
        value = metrics[self.task.monitor]
        improved = self.state.tracker.update(value, metrics.get("loss"), self.state.epoch)
        self.state.history.append(row)
        self.log.log(row)
        if improved:
            self._save("best", metrics)
        self._save("last", metrics)
        self.log.plot(self.state.history, self.task.monitor)
        distributed.wait_for_main()  # rank 0's writes may outlast dist_timeout
