"""Task heads and steps: classification and contrastive; :func:`build_model` rebuilds either."""

from __future__ import annotations

from torch import nn

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
