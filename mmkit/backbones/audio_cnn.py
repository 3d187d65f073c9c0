"""Small CNNs over log-mel spectrograms ``[B, C, n_mels, frames]`` of any size.

:class:`AudioBackbone` holds the shared contract (``num_features``, ``forward_features``,
``forward_head``, global pooling that takes any input size); :class:`AudioCNN` is a plain stack of
conv-BN-activation blocks with 2x2 max pooling. Registered variants: ``audio_cnn`` (default,
~0.1M parameters) and ``audio_cnn_test`` (tiny, for fast end-to-end tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmkit.backbones.base import init_conv_weights
from mmkit.errors import UserInputError
from mmkit.registry import register_backbone, variant

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


def make_activation(name: str) -> nn.Module:
    """``nn.ReLU`` / ``nn.SiLU`` / ``nn.GELU`` by name."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise UserInputError(
            f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}"
        ) from None


def conv_bn_act(c_in: int, c_out: int, activation: str, *, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias) -> BatchNorm -> activation."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        make_activation(activation),
    )


class AudioBackbone(nn.Module):
    """Shared head and pooling of the audio backbones.

    Subclasses build ``self.body`` (``[B, C, F, T] -> [B, num_features, F', T']``) and call
    :meth:`_init_head`. Pooling averages over frequency, then adds the mean and the max over time,
    so inputs of any size (down to 1x1) work.
    """

    num_features: int
    pretrained_fresh = ("head.",)  # the head (mmkit.backbones.base)

    def _init_head(self, num_features: int, num_classes: int, dropout: float) -> None:
        if num_classes < 0:
            raise UserInputError(f"num_classes ({num_classes}) must be >= 0 (0: no classifier)")
        if not 0.0 <= dropout < 1.0:
            raise UserInputError(f"dropout ({dropout}) must be in [0, 1)")
        self.num_features = num_features
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, num_classes) if num_classes else nn.Identity()

    def _init_weights(self) -> None:
        init_conv_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Spectrogram batch ``[B, C, F, T]`` -> pooled features ``[B, num_features]``."""
        if x.dim() != 4:
            raise ValueError(
                f"expected a spectrogram batch [B, C, F, T], got shape {tuple(x.shape)}"
            )
        x = self.body(x).mean(dim=2)
        return x.mean(dim=-1) + x.amax(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``[B, num_features]`` -> logits ``[B, num_classes]`` (features if 0 classes)."""
        return self.head(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_backbone("audio_cnn", modality="audio")
class AudioCNN(AudioBackbone):
    """Small log-mel CNN (4 conv blocks, ~0.1M parameters): the default audio backbone.

    Conv-BN-activation blocks, each followed by 2x2 max pooling (ceil mode, any input size)."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 64, 128),
        dropout: float = 0.2,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise UserInputError(f"widths must be positive channel counts, got {list(widths)}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for width in widths:
            layers += [conv_bn_act(c_in, width, activation), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = width
        self.body = nn.Sequential(*layers)
        self._init_head(c_in, num_classes, dropout)
        self._init_weights()


audio_cnn_test = register_backbone("audio_cnn_test", modality="audio")(
    variant(
        AudioCNN,
        "Tiny log-mel CNN (3 blocks, ~6k parameters) for fast end-to-end tests.",
        widths=(8, 16, 32),
        dropout=0.0,
    )
)
