"""Where a run stands (:class:`TrainerState`, saved as ``last/trainer_state.json``) and what
it ended with (:class:`TrainResult`).

The file is flat JSON (``epoch``, ``step_in_epoch``, ``global_step``, ``best``, ``best_loss``,
``best_epoch``, ``bad_epochs``, ``epoch_loss_sum``, ``history``, ``world``, ``scheduler``,
``optimizer``), the same keys since the first resumable mmkit, so any run that was saved can be
continued exactly. A checkpoint may come from anyone: reading checks every field and names the
file and the key in one line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mmkit.engine.tracker import BestTracker
from mmkit.errors import CheckpointError, UserInputError

_INTS = ("epoch", "step_in_epoch", "global_step", "best_epoch", "bad_epochs")


@dataclass
class TrainResult:
    """What a finished run returns (``mmkit ... train --json`` prints :meth:`to_dict`)."""

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


@dataclass
class TrainerState:
    """The loop's position and early-stopping state, plus what resume restores beside them."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # steps of the current epoch done
    global_step: int = 0
    tracker: BestTracker = field(default_factory=BestTracker)
    epoch_loss_sum: float = 0.0  # the current epoch's train loss, summed over its synced steps
    history: list[dict[str, Any]] = field(default_factory=list)  # the rows of metrics.jsonl
    world: int = 1  # processes of the run that saved it
    scheduler: dict[str, Any] = field(default_factory=dict)  # LR scheduler state_dict (saved)
    # the optimizer's param groups and non-tensor values; its tensors are beside, in
    # optimizer.safetensors (both written by save_checkpoint)
    optimizer: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tracker"}
        head = {k: out.pop(k) for k in ("epoch", "step_in_epoch", "global_step")}
        return {**head, **asdict(self.tracker), **out}

    @classmethod
    def read(cls, path: Path) -> TrainerState:
        try:
            data = json.loads(path.read_text(), parse_constant=_no_constant)
        except (json.JSONDecodeError, OSError, UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot read the trainer state ({exc})") from exc
        return cls.from_json(data, path)

    @classmethod
    def from_json(cls, data: Any, source: str | Path) -> TrainerState:
        """Check every field's type (unknown keys are ignored; ``best_loss`` and ``world``,
        missing in early files, default to none and 1)."""

        def bad(key: str, what: str) -> CheckpointError:
            return CheckpointError(f"{source}: {key} must be {what}")

        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: must be a JSON object")
        for key in _INTS:
            value = data.get(key)
            if not _is_int(value) or value < -1:
                raise bad(key, "an integer")
        for key, optional in (("best", True), ("best_loss", True), ("epoch_loss_sum", False)):
            value = data.get(key)
            if not (optional and value is None) and (
                not isinstance(value, int | float) or isinstance(value, bool)
            ):
                raise bad(key, "a number")
        history = data.get("history")
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            raise bad("history", "a list of JSON objects")
        world = data.get("world", 1)
        if not _is_int(world) or world < 1:
            raise bad("world", "a positive integer")
        if not isinstance(data.get("scheduler"), dict):
            raise bad("scheduler", "a JSON object")
        opt = data.get("optimizer")
        if (
            not isinstance(opt, dict)
            or not isinstance(opt.get("param_groups"), list)
            or not all(isinstance(g, dict) for g in opt["param_groups"])
            or not isinstance(opt.get("scalars"), dict)
        ):
            raise bad("optimizer", "a JSON object with param_groups and scalars")
        return cls(
            epoch=data["epoch"],
            step_in_epoch=data["step_in_epoch"],
            global_step=data["global_step"],
            tracker=BestTracker(
                data.get("best"), data.get("best_loss"), data["best_epoch"], data["bad_epochs"]
            ),
            epoch_loss_sum=data["epoch_loss_sum"],
            history=history,
            world=world,
            scheduler=data["scheduler"],
            optimizer=opt,
        )

    def check_world(
        self, last: Path, batch: Any, batch_size: int, world: int, steps_per_epoch: int
    ) -> str:
        """Resuming ``last`` (saved by ``self.world`` processes with ``--batch-size`` ``batch``)
        with ``world`` processes: allowed only where it changes no global batch and not the
        learning-rate schedule, i.e. from an epoch's end with the same global batch; the note to
        show then, else a one-line :class:`UserInputError`."""
        here = batch_size * world
        how = f"with {self.world} process{'es' if self.world > 1 else ''}"
        if self.step_in_epoch:
            why = f"in the middle of epoch {self.epoch + 1}"
        elif not isinstance(batch, int) or batch * self.world != here:
            why = f"with a global batch of {batch} x {self.world}, this one is {here}"
        elif self.global_step != self.epoch * steps_per_epoch:
            why = f"with {self.global_step // max(1, self.epoch)} steps per epoch"
        else:
            return (
                f"resuming a {self.world}-process run with {world}: the same global batches and "
                "learning-rate schedule; batch-norm statistics and random draws are per "
                "process, so they differ"
            )
        raise UserInputError(
            f"--resume: {last} was saved {how} {why}; resume it {how}, or from an epoch's end "
            "with the same global batch (--batch-size x processes)"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
