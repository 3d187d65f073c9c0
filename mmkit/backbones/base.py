"""What every registered backbone is: the contract :func:`mmkit.register_backbone` expects.

A backbone is an ``nn.Module`` built by ``factory(*, num_classes, **kwargs)`` (the factory may be
the class itself) that splits into a feature extractor and a head, as timm's models do::

    features = model.forward_features(x)     # [B, num_features]
    logits = model.forward_head(features)    # [B, num_classes]; the features when num_classes == 0
    logits = model(x)                        # forward_head(forward_features(x))

Per modality, ``x`` is what the preprocess stages produce. Audio backbones declare the input
they take with ``register_backbone(..., input=...)`` (``mmkit list`` / ``describe`` show it):

- audio, ``input="log_mel"`` (the default): a log-mel batch ``float [B, 1, n_mels, frames]`` of
  any size, down to 1x1 (pool to a vector); the factory takes ``in_channels`` (1 for log-mel) so
  that several features can be stacked;
- audio, ``input="waveform"``: the mono waveform ``float [B, samples]`` at the run's sample
  rate, with no log-mel or SpecAugment in front (the network has its own front end);
- video: clips ``float [B, 3, T, H, W]`` from ``video_transform``;
- image / text towers (for image-text models): ``float [B, 3, S, S]`` / ``long [B, L]``, with
  ``image_size`` / ``context_length`` attributes;
- mm (image-text) models: :class:`mmkit.backbones.clip_base.ClipModel`.

:class:`ClassifierBackbone` is the usual shape of a classification backbone: subclasses build
the feature extractor, implement ``forward_features`` and call ``_init_head``.

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

from abc import ABC, abstractmethod
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from mmkit.errors import UserInputError


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


class ClassifierBackbone(nn.Module, ABC):
    """Pooled features -> dropout -> a linear classifier (none for ``num_classes == 0``).

    ``head_name`` is the classifier's attribute (``"head"``; ``"fc"`` where published weights
    name it so); ``pretrained_fresh`` defaults to it. Subclasses implement ``forward_features``.
    """

    head_name: ClassVar[str] = "head"
    pretrained_fresh: ClassVar[tuple[str, ...]] = ("head.",)
    num_features: int
    num_classes: int

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "pretrained_fresh" not in cls.__dict__:
            cls.pretrained_fresh = (f"{cls.head_name}.",)

    def _init_head(self, num_features: int, num_classes: int, dropout: float) -> None:
        """Validate the head's arguments and build it (``self.dropout``, ``self.<head_name>``)."""
        if num_classes < 0:
            raise UserInputError(f"num_classes ({num_classes}) must be >= 0 (0: no classifier)")
        if not 0.0 <= dropout < 1.0:
            raise UserInputError(f"dropout ({dropout}) must be in [0, 1)")
        self.num_features = int(num_features)
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        setattr(self, self.head_name, head)

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs -> pooled features ``[B, num_features]`` (each backbone's own)."""

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``[B, num_features]`` -> logits ``[B, num_classes]`` (features if 0 classes)."""
        return getattr(self, self.head_name)(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
