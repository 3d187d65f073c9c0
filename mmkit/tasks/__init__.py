"""Task heads and steps: classification and contrastive; :func:`build_model` rebuilds either."""

from __future__ import annotations

from typing import Any

from torch import nn

from mmkit.errors import CheckpointError


def build_model(config: dict[str, Any], source: str = "config.json") -> nn.Module:
    """The exact model a checkpoint's ``config.json`` describes (weights not loaded).

    The config is untrusted data: every plugin it names is built through
    :meth:`~mmkit.registry.Registry.create_from_config`, which refuses arguments that would load
    a file or run code."""
    task = config.get("task")
    if task == "classify":
        from mmkit.tasks.classify import build_classifier

        return build_classifier(config, source)
    if task == "contrastive":
        from mmkit.tasks.contrastive import build_contrastive

        return build_contrastive(config, source)
    raise CheckpointError(f"unknown task {task!r} in checkpoint config")
