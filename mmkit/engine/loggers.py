"""Where a run's per-epoch metrics go besides ``metrics.jsonl`` (which is always written: resume
rebuilds from it) and ``curves.png``: TensorBoard event files or a CSV table in the run directory.
:class:`RunLog` writes all of them.

``--logger auto`` (the default) writes TensorBoard events when the ``tensorboard`` package is
installed (``pip install 'mmkit[tensorboard]'``), else a CSV; ``none`` writes neither.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any, Protocol

from mmkit.errors import UserInputError
from mmkit.io.atomic import write_text_atomic

LOGGERS = ("auto", "tensorboard", "csv", "none")


class MetricsLogger(Protocol):
    def log(self, row: dict[str, Any]) -> None:
        """One epoch's row (``epoch``, ``train_loss``, ``val_*``...)."""

    def close(self) -> None: ...


class NoLogger:
    def log(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class CsvLogger:
    """``metrics.csv``: one row per epoch, numeric columns, rewritten from the history on resume."""

    def __init__(self, run_dir: Path, history: list[dict[str, Any]]) -> None:
        self.path = run_dir / "metrics.csv"
        self.rows = [dict(r) for r in history]
        self._write()

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        self._write()

    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Event files in ``run_dir/tensorboard``; each numeric value a scalar at step ``epoch``.
    On resume, events past the resumed epoch (a killed run's) are purged."""

    def __init__(self, run_dir: Path, resumed_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(
            str(run_dir / "tensorboard"), purge_step=resumed_epoch + 1 if resumed_epoch else None
        )

    def log(self, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                group = "val" if key.startswith("val_") else "train"
                self.writer.add_scalar(f"{group}/{key.removeprefix('val_')}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def make_logger(kind: str, run_dir: Path, history: list[dict[str, Any]]) -> MetricsLogger:
    """The logger ``--logger kind`` asks for, given the run's history so far."""
    if kind not in LOGGERS:
        raise UserInputError(f"--logger must be one of {', '.join(LOGGERS)}, got {kind!r}")
    if kind == "auto":
        kind = "tensorboard" if tensorboard_available() else "csv"
    if kind == "tensorboard":
        if not tensorboard_available():
            raise UserInputError(
                "--logger tensorboard needs the tensorboard package: "
                "pip install 'mmkit[tensorboard]'"
            )
        return TensorBoardLogger(run_dir, len(history))
    if kind == "csv":
        return CsvLogger(run_dir, history)
    return NoLogger()


class RunLog:
    """Rank 0's per-epoch records in ``run_dir``: ``metrics.jsonl`` (one JSON row per epoch),
    the ``--logger`` one, and ``curves.png``; on the other ranks it writes nothing. Made at the
    start of a run or a resume with the history so far: ``metrics.jsonl`` is rewritten from it,
    so rows of epochs that a kill lost before ``last/`` was saved go away."""

    def __init__(self, run_dir: Path, kind: str, history: list[dict[str, Any]], *, main: bool):
        self.path, self.main = run_dir / "metrics.jsonl", main
        self.logger = make_logger(kind, run_dir, history) if main else NoLogger()
        if main:
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in history))

    def log(self, row: dict[str, Any]) -> None:
        if self.main:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            self.logger.log(row)

    def plot(self, history: list[dict[str, Any]], monitor: str) -> None:
        if self.main:
            from mmkit.engine.plots import plot_curves

            plot_curves(history, self.path.with_name("curves.png"), monitor)

    def close(self) -> None:
        self.logger.close()
