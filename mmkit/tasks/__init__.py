"""Task heads and steps: classification and contrastive; :func:`build_model` rebuilds either,
:func:`load_checkpoint` with a checkpoint's weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmkit.io.checkpoint_dir import CONFIG_FILE, build_checked, read_spec, resolve_checkpoint_dir
from mmkit.spec import CheckpointSpec


def build_model(spec: CheckpointSpec, source: str = "config.json") -> nn.Module:
    """The exact model a checkpoint's ``config.json`` describes (weights not loaded).

    The config is untrusted data: every plugin it names is built through
    :meth:`~mmkit.registry.Registry.create_from_config`, which refuses arguments that would load
    a file or run code."""
    if spec.task == "classify":
        from mmkit.tasks.classify import build_classifier

        return build_classifier(spec, source)
    from mmkit.tasks.contrastive import build_contrastive

    return build_contrastive(spec, source)


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    spec: CheckpointSpec
    path: Path

    @property
    def config(self) -> dict[str, Any]:
        """The checkpoint's ``config.json`` as a dict."""
        return self.spec.to_json()


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild a checkpoint's model from ``config.json`` alone and load its weights (eval mode)."""
    ckpt = resolve_checkpoint_dir(path)
    spec = read_spec(ckpt)
    model = build_checked(lambda: build_model(spec, str(ckpt / CONFIG_FILE)), ckpt, device)
    return LoadedCheckpoint(model, spec, ckpt)
