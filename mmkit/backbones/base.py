"""What every registered backbone is: the contract :func:`mmkit.register_backbone` expects.

A backbone is an ``nn.Module`` built by ``factory(*, num_classes, **kwargs)`` (the factory may be
the class itself) that splits into a feature extractor and a head, as timm's models do::

    features = model.forward_features(x)     # [B, num_features]
    logits = model.forward_head(features)    # [B, num_classes]; the features when num_classes == 0
    logits = model(x)                        # forward_head(forward_features(x))

Per modality, ``x`` is what the preprocess stages produce:

- audio: a log-mel batch ``float [B, 1, n_mels, frames]`` of any size (pool to a vector); the
  factory takes ``in_channels`` (1 for log-mel) so several features can be stacked;
- video: clips ``float [B, 3, T, H, W]`` from ``video_transform``;
- image / text towers (for image-text models): ``float [B, 3, S, S]`` / ``long [B, L]``, with
  ``image_size`` / ``context_length`` attributes;
- mm (image-text) models: :class:`mmkit.backbones.clip_base.ClipModel`.

A classification backbone names its head (the classifier and any pooling weights learned with
it) in ``pretrained_fresh``, a tuple of state-dict key prefixes (``("fc.",)``): what a
pretrained start may leave fresh, what ``--freeze backbone`` trains, and what keeps the full
learning rate under ``--backbone-lr-scale``.

Keyword arguments must be plain JSON values (numbers, strings, lists, mappings): a checkpoint's
``config.json`` records them, and rebuilding a model from it passes them back. An argument that
names weights to load (a path or tag) is declared with ``register_backbone(..., loads=(...))`` so
that a checkpoint can never set it. ``tests/test_plugin_contract.py`` checks every registered
backbone and preprocessor against this contract.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Backbone(Protocol):
    """The interface of a registered backbone (see the module docstring)."""

    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs -> pooled features ``[B, num_features]``."""
        ...

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features -> logits ``[B, num_classes]`` (the features themselves without a head)."""
        ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_head(forward_features(x))``."""
        ...


def init_conv_weights(module: nn.Module) -> None:
    """The usual initialisation of a conv net: Kaiming (fan-out, ReLU) convolutions, unit
    batch norms, and a small normal head, for 2D and 3D layers alike."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
