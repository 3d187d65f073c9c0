"""A residual CNN over log-mel spectrograms: the stronger audio backbone, ``audio_resnet``.

A strided stem, then stages of basic residual blocks (two 3x3 conv-BN, identity or 1x1 projection
shortcut, last BN zero-initialised so every block starts as the identity), then the shared pooling
and head of :class:`~mmkit.backbones.audio_cnn.AudioBackbone`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmkit.backbones.audio_cnn import AudioBackbone, conv_bn_act, make_activation
from mmkit.errors import UserInputError
from mmkit.registry import register_backbone


class BasicBlock(nn.Module):
    """``act(bn(conv(act(bn(conv(x))))) + shortcut(x))`` with an optional stride."""

    def __init__(self, c_in: int, c_out: int, *, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1 = conv_bn_act(c_in, c_out, activation, stride=stride)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn2(self.conv2(self.conv1(x))) + self.shortcut(x))


@register_backbone("audio_resnet", modality="audio")
class AudioResNet(AudioBackbone):
    """Residual log-mel CNN (3 stages of 2 basic blocks, ~0.7M parameters): more accurate.

    A stride-2 stem and residual stages; every stage after the first halves F and T."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64, 128),
        depths: Sequence[int] = (2, 2, 2),
        dropout: float = 0.2,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths or min(*widths, *depths) < 1:
            raise UserInputError(
                f"widths and depths must be equally long positive lists, got {list(widths)} "
                f"and {list(depths)}"
            )
        layers: list[nn.Module] = [conv_bn_act(in_channels, widths[0], activation, stride=2)]
        c_in = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(BasicBlock(c_in, width, stride=stride, activation=activation))
                c_in = width
        self.body = nn.Sequential(*layers)
        self._init_head(c_in, num_classes, dropout)
        self._init_weights()
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
