"""The interface every image-text model in mmkit has (ClipLite, open_clip models, plugins).

:class:`ClipModel` holds what is the same for all of them — the clamped temperature, the
``(image features, text features, scale)`` forward that ``ContrastiveLoss`` takes, the backbone
methods, and the preprocessors that produce its inputs — so a fix lands once. A subclass
provides :meth:`encode_image`, :meth:`encode_text`, the ``logit_scale`` parameter and the
attributes below.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from typing import Any

import torch
from torch import nn

from mmkit.io.image import RESIZE_DEFAULTS

MAX_LOGIT_SCALE = 100.0


class ClipModel(nn.Module, metaclass=ABCMeta):
    """Base class of image-text models.

    Attributes a subclass sets: ``embed_dim`` (= ``num_features``), ``image_size``,
    ``image_mean``, ``image_std``, ``context_length``, ``max_logit_scale``; optionally
    ``image_resize`` (how images are fitted into ``image_size``) and ``tokenizer_name`` (an
    open_clip architecture whose tokenizer to use; empty for the CLIP BPE tokenizer).
    """

    embed_dim: int
    num_features: int
    image_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    context_length: int
    max_logit_scale: float = MAX_LOGIT_SCALE
    tokenizer_name: str = ""

    logit_scale: nn.Parameter  # log of the temperature's inverse (a parameter of the model)

    @abstractmethod
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``float [B, 3, S, S]`` (from ``image_transform``) -> ``[B, embed_dim]``."""

    @abstractmethod
    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``LongTensor [N, context_length]`` (from ``clip_tokenizer``) -> ``[N, embed_dim]``."""

    def scale(self) -> torch.Tensor:
        """``exp(logit_scale)`` clamped at ``max_logit_scale`` (differentiable below the cap)."""
        return self.logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the parameter in place to ``[0, log(max_logit_scale)]`` (after each optimiser
        step, as open_clip's trainer does)."""
        self.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image and text features and the clamped logit scale."""
        return self.encode_image(images), self.encode_text(tokens), self.scale()

    # the backbone interface: a frozen image encoder for a linear probe
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return features

    @property
    def image_resize(self) -> dict[str, Any]:
        """How an image is fitted into ``image_size`` when decoded (store params)."""
        return dict(RESIZE_DEFAULTS)

    def preprocessors(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The registered preprocessors (name, params) that produce this model's inputs."""
        image = {
            "size": self.image_size,
            "mean": list(self.image_mean),
            "std": list(self.image_std),
        }
        text: dict[str, Any] = {"context_length": self.context_length}
        if self.tokenizer_name:
            text["model_name"] = self.tokenizer_name
        return {"image": ("image_transform", image), "text": ("clip_tokenizer", text)}
