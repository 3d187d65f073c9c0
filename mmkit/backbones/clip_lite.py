"""ClipLite: a small CLIP (image tower + text tower + projections + learnable temperature).

Registered as ``clip_lite`` and ``clip_lite_test`` (modality ``mm``). The towers are themselves
registered backbones (``image_vit``, ``image_resnet``, ``text_transformer``, ... or a third-party
plugin), named in the JSON-serialisable kwargs so a checkpoint's ``config.json`` rebuilds the
model::

    create_backbone("clip_lite", embed_dim=128, image_tower="image_resnet",
                    image_kwargs={"width": 16}, text_tower="text_transformer",
                    text_kwargs={"layers": 2})

A tower is any registered backbone of modality ``image`` / ``text`` built with ``num_classes=0``
that exposes ``num_features`` and ``forward_features`` plus ``image_size`` (image towers) or
``context_length`` (text towers); ClipLite reports those so pipelines can build the matching
``image_transform`` / ``clip_tokenizer`` (:meth:`ClipLite.preprocessors`).

``num_classes``: image-text models have no classifier; the factories accept the registry's
``num_classes`` keyword only as ``0`` (the default) and raise ``UserInputError`` otherwise.
Zero-shot classification goes through text prompts instead
(:func:`mmkit.metrics.retrieval.zero_shot_accuracy`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmkit.backbones.clip_base import MAX_LOGIT_SCALE, ClipModel
from mmkit.errors import UserInputError
from mmkit.preprocess.image import CLIP_MEAN, CLIP_STD
from mmkit.registry import BACKBONES, register_backbone, variant

INIT_LOGIT_SCALE = math.log(1 / 0.07)


class ClipLite(ClipModel):
    """Image tower + text tower, each linearly projected to ``embed_dim``; CLIP's temperature.

    ``logit_scale`` starts at ``log(1 / 0.07)``; the scale used (``exp(logit_scale)``) is clamped
    at ``max_logit_scale`` (100) in :meth:`forward`, and :meth:`clamp_logit_scale_` clamps the
    parameter itself (call it after an optimiser step, as open_clip's trainer does).

    Also a backbone in the registry's sense: ``num_features == embed_dim``, ``forward_features``
    is :meth:`encode_image` and ``forward_head`` the identity, so it can serve as a frozen image
    encoder for a linear probe.
    """

    def __init__(
        self,
        image_tower: nn.Module,
        text_tower: nn.Module,
        *,
        embed_dim: int = 128,
        init_logit_scale: float = INIT_LOGIT_SCALE,
        max_logit_scale: float = MAX_LOGIT_SCALE,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0:
            raise UserInputError(f"embed_dim ({embed_dim}) must be > 0")
        if max_logit_scale <= 1.0:
            raise UserInputError(f"max_logit_scale ({max_logit_scale}) must be > 1")
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.embed_dim = embed_dim
        self.num_features = embed_dim
        self.max_logit_scale = float(max_logit_scale)
        self.image_projection = nn.Linear(image_tower.num_features, embed_dim, bias=False)
        self.text_projection = nn.Linear(text_tower.num_features, embed_dim, bias=False)
        nn.init.normal_(self.image_projection.weight, std=image_tower.num_features**-0.5)
        nn.init.normal_(self.text_projection.weight, std=text_tower.num_features**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.config = dict(config or {})
        self.image_size = int(image_tower.image_size)
        self.context_length = int(text_tower.context_length)
        self.image_mean = CLIP_MEAN
        self.image_std = CLIP_STD

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``float [B, 3, S, S]`` (from ``image_transform``) -> ``[B, embed_dim]``."""
        features = self.image_projection(self.image_tower.forward_features(images))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``LongTensor [N, L]`` (from ``clip_tokenizer``) -> ``[N, embed_dim]``."""
        features = self.text_projection(self.text_tower.forward_features(tokens))
        return F.normalize(features, dim=-1) if normalize else features


def _tower(name: str, modality: str, kwargs: dict[str, Any]) -> nn.Module:
    spec = BACKBONES.get(name)
    if spec.modality != modality:
        raise UserInputError(
            f"{modality} tower {name!r} is a {spec.modality} backbone; choose one of "
            f"{', '.join(BACKBONES.names(modality))}"
        )
    return BACKBONES.create(name, num_classes=0, **kwargs)


@register_backbone("clip_lite", modality="mm")
def clip_lite(
    *,
    num_classes: int = 0,
    embed_dim: int = 128,
    image_tower: str = "image_vit",
    image_kwargs: dict | None = None,
    text_tower: str = "text_transformer",
    text_kwargs: dict | None = None,
    init_logit_scale: float = INIT_LOGIT_SCALE,
    max_logit_scale: float = MAX_LOGIT_SCALE,
) -> ClipLite:
    """Small CLIP: registered image + text towers, projections, learnable temperature.

    The towers are built from the registry; ``model.config`` holds the kwargs."""
    if num_classes != 0:
        raise UserInputError(
            f"image-text models take no num_classes (got {num_classes}); use zero-shot prompts"
        )
    config = {
        "embed_dim": int(embed_dim),
        "image_tower": image_tower,
        "image_kwargs": dict(image_kwargs or {}),
        "text_tower": text_tower,
        "text_kwargs": dict(text_kwargs or {}),
        "init_logit_scale": float(init_logit_scale),
        "max_logit_scale": float(max_logit_scale),
    }
    return ClipLite(
        _tower(image_tower, "image", config["image_kwargs"]),
        _tower(text_tower, "text", config["text_kwargs"]),
        embed_dim=config["embed_dim"],
        init_logit_scale=config["init_logit_scale"],
        max_logit_scale=config["max_logit_scale"],
        config=config,
    )


clip_lite_test = register_backbone("clip_lite_test", modality="mm")(
    variant(
        clip_lite,
        "Tiny ClipLite for fast end-to-end tests.",
        embed_dim=64,
        image_tower="image_vit_test",
        text_tower="text_transformer_test",
    )
)
