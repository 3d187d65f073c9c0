"""Image and text towers for image-text models, built from open_clip's modules.

Registered backbones (each ``factory(*, num_classes=0, **kwargs)``):

- ``image_vit`` / ``image_vit_test`` (modality ``image``):
  ``open_clip.transformer.VisionTransformer`` with class-token pooling; features are the pooled
  ``width``-dim token (its projection removed, :class:`~mmkit.backbones.clip_lite.ClipLite`
  projects).
- ``image_resnet`` (``image``): ``open_clip.modified_resnet.ModifiedResNet`` (3-conv stem,
  antialiased strides, attention pooling) at reduced width and depth.
- ``text_transformer`` / ``text_transformer_test`` (``text``):
  ``open_clip.transformer.TextTransformer`` (causal, pooled at the end token), for token ids from
  the ``clip_tokenizer`` preprocessor.

A tower exposes ``num_features``, ``forward_features`` and ``forward_head`` like every backbone:
with ``num_classes=0`` (the default, how ClipLite uses it) the head is the identity and the tower
is a feature extractor; ``num_classes > 0`` adds a linear classifier, so a tower also serves as a
plain image or text classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmkit.errors import UserInputError
from mmkit.preprocess.text import CLIP_VOCAB_SIZE, DEFAULT_CONTEXT_LENGTH
from mmkit.registry import register_backbone, variant


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserInputError(message)


class _Tower(nn.Module):
    """An encoder body plus a classifier head (identity when ``num_classes == 0``)."""

    def __init__(self, body: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        _check(num_classes >= 0, f"num_classes ({num_classes}) must be >= 0")
        self.body = body
        self.num_features = num_features
        self.num_classes = num_classes
        self.head = nn.Linear(num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class ImageTower(_Tower):
    """``float [B, 3, image_size, image_size]`` -> ``[B, num_features]`` (or class logits)."""

    def __init__(self, body: nn.Module, num_features: int, num_classes: int, image_size: int):
        super().__init__(body, num_features, num_classes)
        self.image_size = image_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, self.image_size, self.image_size):
            raise UserInputError(
                f"image tower expects [B, 3, {self.image_size}, {self.image_size}], "
                f"got {list(x.shape)}"
            )
        return self.body(x)


class TextTower(_Tower):
    """``LongTensor [B, L]`` token ids -> ``[B, num_features]`` (or class logits).

    Shorter inputs (``L < context_length``) are zero-padded, which changes nothing for the causal
    transformer pooled at the end token; longer inputs raise ``UserInputError``.
    """

    def __init__(
        self,
        body: nn.Module,
        num_features: int,
        num_classes: int,
        context_length: int,
        vocab_size: int,
    ) -> None:
        super().__init__(body, num_features, num_classes)
        self.context_length = context_length
        self.vocab_size = vocab_size

    def forward_features(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.shape[1] > self.context_length:
            raise UserInputError(
                f"text tower expects token ids [B, L <= {self.context_length}], "
                f"got {list(tokens.shape)}"
            )
        if tokens.shape[1] < self.context_length:
            tokens = nn.functional.pad(tokens, (0, self.context_length - tokens.shape[1]))
        return self.body(tokens.long())


@register_backbone("image_vit", modality="image")
def image_vit(
    *,
    num_classes: int = 0,
    image_size: int = 64,
    patch_size: int = 8,
    width: int = 192,
    layers: int = 4,
    heads: int = 3,
    mlp_ratio: float = 4.0,
) -> ImageTower:
    """Small patch ViT image tower (open_clip VisionTransformer), 64 px / patch 8 by default.

    Its features are the pooled class token."""
    _check(
        image_size > 0 and patch_size > 0 and image_size % patch_size == 0,
        f"image_size ({image_size}) must be a positive multiple of patch_size ({patch_size})",
    )
    _check(
        heads > 0 and width % heads == 0, f"width ({width}) must be divisible by heads ({heads})"
    )
    from open_clip.transformer import VisionTransformer  # lazy: open_clip imports slowly

    body = VisionTransformer(
        image_size=image_size,
        patch_size=patch_size,
        width=width,
        layers=layers,
        heads=heads,
        mlp_ratio=mlp_ratio,
        output_dim=width,
    )
    body.proj = None  # ClipLite (or the head) projects; open_clip skips a None proj
    return ImageTower(body, width, num_classes, image_size)


image_vit_test = register_backbone("image_vit_test", modality="image")(
    variant(
        image_vit,
        "Tiny ViT image tower for fast tests.",
        width=64,
        layers=2,
        heads=2,
        mlp_ratio=2.0,
    )
)


@register_backbone("image_resnet", modality="image")
def image_resnet(
    *,
    num_classes: int = 0,
    image_size: int = 64,
    width: int = 16,
    layers: Sequence[int] = (1, 1, 1, 1),
    output_dim: int = 256,
    head_width: int = 64,
) -> ImageTower:
    """Small CLIP ResNet image tower (open_clip ModifiedResNet with attention pooling)."""
    _check(
        image_size > 0 and image_size % 32 == 0,
        f"image_size ({image_size}) must be a positive multiple of 32",
    )
    _check(len(layers) == 4 and min(layers) >= 1, f"layers must be 4 counts >= 1, got {layers}")
    embed = width * 32
    _check(
        width > 0 and embed % head_width == 0,
        f"width * 32 ({embed}) must be divisible by head_width ({head_width})",
    )
    from open_clip.modified_resnet import ModifiedResNet

    body = ModifiedResNet(
        layers=list(layers),
        output_dim=output_dim,
        heads=embed // head_width,
        image_size=image_size,
        width=width,
    )
    return ImageTower(body, output_dim, num_classes, image_size)


@register_backbone("text_transformer", modality="text")
def text_transformer(
    *,
    num_classes: int = 0,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    vocab_size: int = CLIP_VOCAB_SIZE,
    width: int = 128,
    layers: int = 4,
    heads: int = 4,
    mlp_ratio: float = 4.0,
) -> TextTower:
    """Small causal text transformer tower (open_clip TextTransformer) for clip_tokenizer ids.

    Its features are the hidden state at the end token."""
    _check(context_length >= 3, f"context_length ({context_length}) must be >= 3")
    _check(
        heads > 0 and width % heads == 0, f"width ({width}) must be divisible by heads ({heads})"
    )
    from open_clip.transformer import TextTransformer

    body = TextTransformer(
        context_length=context_length,
        vocab_size=vocab_size,
        width=width,
        heads=heads,
        layers=layers,
        mlp_ratio=mlp_ratio,
        output_dim=None,
        pool_type="argmax",
    )
    return TextTower(body, width, num_classes, context_length, vocab_size)


text_transformer_test = register_backbone("text_transformer_test", modality="text")(
    variant(
        text_transformer,
        "Tiny text transformer tower for fast tests.",
        width=64,
        layers=2,
        heads=2,
        mlp_ratio=2.0,
    )
)
