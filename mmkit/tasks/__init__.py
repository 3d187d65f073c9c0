"""Task heads and steps: classification and contrastive; :func:`build_model` rebuilds either."""

from __future__ import annotations

from typing import Any

from torch import nn

from mmkit.errors import CheckpointError


def build_model(config: dict[str, Any]) -> nn.Module:
    """The exact model a checkpoint's ``config.json`` describes (weights not loaded)."""
    task = config.get("task")
    if task == "classify":
        from mmkit.tasks.classify import build_classifier

        return build_classifier(config)
    if task == "contrastive":
        from mmkit.tasks.contrastive import build_contrastive

        return build_contrastive(config)
    raise CheckpointError(f"unknown task {task!r} in checkpoint config")
