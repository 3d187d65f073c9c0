"""The run directory around a training job, shared by every modality's ``train``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import Dataset

from mmkit import distributed
from mmkit.config import TrainConfig
from mmkit.engine.placement import resolve_device, seed_everything
from mmkit.engine.state import TrainResult
from mmkit.engine.trainer import Task, Trainer
from mmkit.errors import MmkitError, UserInputError
from mmkit.events import Progress
from mmkit.io.atomic import recover_dir, write_text_atomic
from mmkit.io.files import writing
from mmkit.spec import CheckpointSpec

LOCK_FILE = ".lock"
CHECKPOINT_DIRS = ("last", "best")


@contextmanager
def start_run(out: str | Path, config: dict[str, Any], *, resume: bool) -> Iterator[Path]:
    """Hold the run directory ``out`` for one training job.

    Takes an exclusive lock (a second job on the same ``--out`` gets one line naming the
    holder), puts back a checkpoint that a kill left mid-swap (:func:`~mmkit.io.atomic.
    recover_dir`), checks ``out`` against ``--resume`` and writes the resolved ``config.yaml``.
    Under ``torchrun`` only rank 0 locks and writes.
    """
    run_dir = Path(out)
    main = distributed.is_main()
    with _this_rank(), writing(run_dir, "to the run directory"):  # read-only, a file in the way
        run_dir.mkdir(parents=True, exist_ok=True)
    with _locked(run_dir) if main else nullcontext():
        if main:
            for name in CHECKPOINT_DIRS:
                recover_dir(run_dir / name)
        if resume and not (run_dir / "last").is_dir():
            raise UserInputError(f"--resume: {run_dir / 'last'} does not exist")
        if not resume and (run_dir / "last").is_dir():
            raise UserInputError(f"{run_dir} already holds a run; use --resume or another --out")
        if main and not resume:  # leftovers of a run killed before its first last/ was saved
            shutil.rmtree(run_dir / "best", ignore_errors=True)
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        if main:
            text = yaml.safe_dump(config, sort_keys=False)
            write_text_atomic(run_dir / "config.yaml", text, "the run config")
        yield run_dir


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``run_dir/.lock`` (released by the kernel if the process dies);
    the file names the holder for whoever finds it taken."""
    path = run_dir / LOCK_FILE
    with writing(run_dir, "to the run directory"):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise UserInputError(
                f"{run_dir} is in use by {holder}; wait for it or use another --out"
            ) from None
        with contextlib.suppress(OSError):  # a full disk: the lock holds, unnamed
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass
class Job:
    """What one training run needs, built once its run directory is held (see :func:`fit`)."""

    model: torch.nn.Module
    task: Task
    train_set: Dataset
    val_set: Dataset
    spec: CheckpointSpec  # what the run's checkpoints are (their config.json)
    skipped: list[dict[str, str]]  # files the data step left out


@contextmanager
def _this_rank() -> Iterator[None]:
    """On a rank other than 0 (which did the same first, from the same options), an error
    inside says which rank, and that its node sees other files than rank 0's."""
    try:
        yield
    except MmkitError as exc:
        if distributed.is_main() or isinstance(exc, distributed.PeerLost):
            raise
        raise UserInputError(
            f"rank {distributed.rank()} of {distributed.world()}: {exc}; rank 0 could do it: "
            "does every node see the same --dataset, --out and MMKIT_CACHE?"
        ) from exc


def fit(
    cfg: TrainConfig, setup: Callable[[], Job], *, resume: bool, progress: Progress
) -> TrainResult:
    """The one training entry of every modality: hold the run directory, seed, ``setup()`` the
    job (prepare the data, build the model), train it (or continue with ``resume``). Under
    ``torchrun`` it joins the process group (before any rank waits) and leaves it at the end;
    the trainer trains on the group and this rank's device."""
    device = distributed.init(resolve_device(cfg.device), cfg.dist_timeout)
    distributed.check_same(cfg.to_dict())
    with distributed.failures(), start_run(cfg.out, cfg.to_dict(), resume=resume) as run_dir:
        seed_everything(cfg.seed)
        with distributed.main_first(), _this_rank():  # rank 0 prepares the store first
            job = setup()
        trainer = Trainer(
            job.model,
            job.task,
            job.train_set,
            job.val_set,
            cfg,
            run_dir,
            spec=job.spec,
            device=device,
            progress=progress,
        )
        if resume:
            trainer.resume()
        result = trainer.fit()
    distributed.close()
    return replace(result, skipped=job.skipped)
