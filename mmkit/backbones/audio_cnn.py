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

from mmkit.backbones.base import ClassifierBackbone, init_conv_weights
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


class AudioBackbone(ClassifierBackbone):
    """Shared head and pooling of the audio backbones.

    Subclasses build ``self.body`` (``[B, C, F, T] -> [B, num_features, F', T']``) and call
    ``_init_head`` (:class:`~mmkit.backbones.base.ClassifierBackbone`). Pooling averages over
    frequency, then adds the mean and the max over time, so inputs of any size (down to 1x1) work.
    """

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
