"""Any open_clip architecture behind the ClipLite interface (``open_clip_model``).

:func:`create_open_clip` builds ``open_clip.create_model_and_transforms(name, pretrained=...)`` and
wraps it in :class:`OpenClipModel`, which has ClipLite's ``encode_image`` / ``encode_text`` /
``forward`` plus the model's own tokenizer, image size, mean and std, so ``mm sim``, ``mm eval``
and fine-tuning work with it unchanged. ``pretrained`` is a local weights file (``.safetensors``,
``.bin``, ``.pt``; works offline) or a tag from ``open_clip.list_pretrained()`` (downloads from the
hub, so it needs the network or a warm cache).

When rebuilding from an mmkit checkpoint pass ``pretrained=None``: the architecture is created
with random weights and the checkpoint's ``model.safetensors`` then fills it.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import torch
from torch import nn

from mmkit.errors import UserInputError
from mmkit.registry import register_backbone

MAX_LOGIT_SCALE = 100.0


class OpenClipModel(nn.Module):
    """An open_clip ``CLIP`` / ``CustomTextCLIP`` with ClipLite's interface.

    Attributes:
        model: the wrapped open_clip model (its state dict keys are prefixed ``model.``).
        name: the open_clip architecture name.
        embed_dim: size of the shared image-text embedding (``num_features``).
        image_size, image_mean, image_std: the model's own preprocessing.
        context_length: tokens per caption the text tower expects.
        tokenizer: the open_clip tokenizer object for this architecture.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        embed_dim: int,
        context_length: int,
        max_logit_scale: float = MAX_LOGIT_SCALE,
    ) -> None:
        super().__init__()
        self.model = model
        self.name = name
        cfg = model.visual.preprocess_cfg
        size = cfg["size"]
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        if sizes[0] != sizes[1]:
            raise UserInputError(f"open_clip model {name!r} expects non-square images {sizes}")
        self.image_size = int(sizes[0])
        self.image_mean = tuple(float(v) for v in cfg["mean"])
        self.image_std = tuple(float(v) for v in cfg["std"])
        self.context_length = int(context_length)
        self.max_logit_scale = float(max_logit_scale)
        self.embed_dim = int(embed_dim)
        self.num_features = self.embed_dim
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """``open_clip.get_tokenizer(name, context_length)``, built on first use."""
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.name, context_length=self.context_length)
        return self._tokenizer

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``float [B, 3, image_size, image_size]`` normalised with image_mean/std."""
        return self.model.encode_image(images, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``LongTensor [N, context_length]`` from :attr:`tokenizer` (or ``clip_tokenizer``)."""
        return self.model.encode_text(tokens, normalize=normalize)

    def scale(self) -> torch.Tensor:
        """``exp(logit_scale)`` clamped at ``max_logit_scale``."""
        return self.model.logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the parameter in place to ``[0, log(max_logit_scale)]``."""
        self.model.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image and text features and the (clamped) logit scale."""
        return self.encode_image(images), self.encode_text(tokens), self.scale()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def preprocessors(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The registered preprocessors (name, params) that produce this model's inputs."""
        return {
            "image": (
                "image_transform",
                {
                    "size": self.image_size,
                    "mean": list(self.image_mean),
                    "std": list(self.image_std),
                },
            ),
            "text": (
                "clip_tokenizer",
                {"context_length": self.context_length, "model_name": self.name},
            ),
        }


def create_open_clip(
    name: str,
    pretrained: str | None = None,
    *,
    force_image_size: int | None = None,
    force_context_length: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    cache_dir: str | None = None,
) -> OpenClipModel:
    """Build open_clip architecture ``name`` with weights from ``pretrained`` (path or tag).

    ``model_kwargs`` override the architecture config (``embed_dim``, ``vision_cfg``,
    ``text_cfg``...), as ``open_clip.create_model(**model_kwargs)`` does.

    Raises:
        UserInputError: unknown architecture, or weights that are neither a file nor a tag
            that could be fetched.
    """
    import open_clip  # lazy: importing open_clip takes seconds

    known = open_clip.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UserInputError(f"unknown open_clip architecture {name!r}.{hint}")
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            name,
            pretrained=pretrained or None,
            force_image_size=force_image_size,
            force_context_length=force_context_length,
            cache_dir=cache_dir,
            **(model_kwargs or {}),
        )
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        reason = " ".join(str(exc).split())  # one line (state-dict errors span many)
        if len(reason) > 400:
            reason = reason[:400] + "..."
        raise UserInputError(
            f"open_clip {name!r} with pretrained={pretrained!r}: {reason}"
        ) from exc
    context_length = getattr(model, "context_length", None)
    if context_length is None:
        context_length = getattr(model.text, "context_length", 77)
    embed_dim = (model_kwargs or {}).get("embed_dim", open_clip.get_model_config(name)["embed_dim"])
    return OpenClipModel(model, name=name, embed_dim=embed_dim, context_length=int(context_length))


@register_backbone("open_clip_model", modality="mm")
def open_clip_model(
    *,
    num_classes: int = 0,
    model_name: str = "ViT-B-32",
    pretrained: str | None = None,
    force_image_size: int | None = None,
    force_context_length: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> OpenClipModel:
    """Any open_clip architecture (weights from a local file or a hub tag) as an mm model.

    ``model_name`` is the open_clip architecture (``open_clip.list_models()``); the keyword is
    not ``name`` because ``create_backbone(name, **kwargs)`` takes the plugin name.
    """
    if num_classes != 0:
        raise UserInputError(
            f"image-text models take no num_classes (got {num_classes}); use zero-shot prompts"
        )
    return create_open_clip(
        model_name,
        pretrained,
        force_image_size=force_image_size,
        force_context_length=force_context_length,
        model_kwargs=model_kwargs,
    )
