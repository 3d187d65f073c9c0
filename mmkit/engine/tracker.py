"""Which epoch's weights are ``best/``, and when early stopping ends a run."""

from __future__ import annotations

from dataclasses import dataclass

from mmkit.events import Progress

# Early stopping reads the validation metric; on fewer items than this it moves in steps of 5 %
# or more and ended small fine-tuning runs at random (benchmarks/RESULTS-video.md, transfer).
MIN_VALIDATION_TO_STOP = 20


def early_stopping(patience: int, validation_items: int, progress: Progress) -> int:
    """The patience a run uses: ``patience``, or 0 (the whole schedule) with a note when the
    validation set is too small to stop on."""
    if patience > 0 and validation_items < MIN_VALIDATION_TO_STOP:
        progress.message(
            f"early stopping is off: {validation_items} validation items are too few to stop "
            f"on (fewer than {MIN_VALIDATION_TO_STOP}); training all epochs"
        )
        return 0
    return patience


@dataclass
class BestTracker:
    """The best validation result so far and the epochs since it (saved in the trainer state)."""

    best: float | None = None  # the monitored metric (maximised) at the best epoch
    best_loss: float | None = None  # the validation loss at the best epoch
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs since the last improvement

    def improves(self, value: float, loss: float | None) -> bool:
        """Better on the monitored metric, or equal to the best with a lower validation loss: a
        small in-distribution validation set reads 1.0 accuracy for many epochs, and the first
        of them is rarely the model that generalises best."""
        best, best_loss = self.best, self.best_loss
        if best is None or value > best:
            return True
        return value == best and loss is not None and (best_loss is None or loss < best_loss)

    def update(self, value: float, loss: float | None, epoch: int) -> bool:
        """Record epoch ``epoch``'s validation result; true when it is the new best."""
        if self.improves(value, loss):
            self.best, self.best_loss, self.best_epoch, self.bad_epochs = value, loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def exhausted(self, patience: int) -> bool:
        """Early stopping: ``patience`` epochs without improvement (never with 0)."""
        return patience > 0 and self.bad_epochs >= patience

    def best_metric(self, monitor: str) -> dict[str, float]:
        return {monitor: self.best} if self.best is not None else {}
