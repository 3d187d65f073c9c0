"""Checks on what a model produced, shared by the tasks and the pipelines."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmkit.errors import CheckpointError
from mmkit.io.files import short_path


def check_finite(
    scores: torch.Tensor, model: nn.Module, checkpoint: Path | None, item: str
) -> None:
    """A :class:`CheckpointError` when a model's ``scores`` for ``item`` hold NaN or inf (they
    would make no sense, and are not even valid JSON), saying whether its weights do."""
    if bool(torch.isfinite(scores).all()):
        return
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    broken = sum(not bool(torch.isfinite(t).all()) for t in tensors)
    where = f"checkpoint {checkpoint}" if checkpoint is not None else "the model"
    cause = (
        f"{broken} of {len(tensors)} weight tensors hold NaN or inf values"
        if broken
        else "its weights are finite, the computation overflowed"
    )
    raise CheckpointError(f"{where} gives non-finite scores for {short_path(item)}: {cause}")
