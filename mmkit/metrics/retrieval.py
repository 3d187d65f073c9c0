"""Image-text retrieval metrics (recall@K, mean and median rank) and zero-shot accuracy.

Features are compared by cosine similarity (they are L2-normalised here). Several captions may
describe one image: ``text_to_image[t]`` is the index of the image caption ``t`` describes.

- image -> text: an image's rank is the position of its best-ranked own caption among all
  captions; ``R@K`` is the fraction of images with rank <= K.
- text -> image: a caption's rank is the position of its image among all images.

Ranks are 1-based and ties count against the query: a wrong candidate scoring exactly as high as
the right one ranks ahead of it, so a collapsed model (all features equal) gets R@1 = 0, not 1.
The median is the statistical median (mean of the two middle ranks for an even count).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from mmkit.errors import UserInputError

_CHUNK = 1024


def _check_features(name: str, features: torch.Tensor) -> None:
    if features.ndim != 2:
        raise UserInputError(f"{name} must be [N, D], got {list(features.shape)}")


def _summary(ranks: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    ranks = ranks.double()
    out = {f"R@{k}": float((ranks <= k).double().mean()) for k in ks}
    out["mean_rank"] = float(ranks.mean())
    out["median_rank"] = float(ranks.quantile(0.5))
    return out


def image_to_text_ranks(
    image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor
) -> torch.Tensor:
    """1-based rank of each image's best own caption among all captions (ties pessimistic)."""
    num_images = image_features.shape[0]
    ranks = torch.empty(num_images, dtype=torch.long)
    for start in range(0, num_images, _CHUNK):
        sims = image_features[start : start + _CHUNK] @ text_features.T  # [c, N_text]
        own = (
            text_to_image[None, :]
            == torch.arange(start, start + sims.shape[0], device=sims.device)[:, None]
        )
        best_own = sims.masked_fill(~own, -torch.inf).amax(dim=1, keepdim=True)
        ranks[start : start + sims.shape[0]] = (1 + ((sims >= best_own) & ~own).sum(dim=1)).cpu()
    return ranks


def text_to_image_ranks(
    image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor
) -> torch.Tensor:
    """1-based rank of each caption's image among all images (ties pessimistic)."""
    num_texts = text_features.shape[0]
    ranks = torch.empty(num_texts, dtype=torch.long)
    for start in range(0, num_texts, _CHUNK):
        sims = text_features[start : start + _CHUNK] @ image_features.T  # [c, N_image]
        target = text_to_image[start : start + sims.shape[0]]
        true = sims.gather(1, target[:, None])
        wrong = torch.ones_like(sims, dtype=torch.bool)
        wrong.scatter_(1, target[:, None], False)
        ranks[start : start + sims.shape[0]] = (1 + ((sims >= true) & wrong).sum(dim=1)).cpu()
    return ranks


def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, Any]:
    """Recall@K and mean/median rank in both directions (docs/design.md ``mm eval`` shape).

    Args:
        image_features: ``[N_images, D]``.
        text_features: ``[N_texts, D]``.
        text_to_image: ``LongTensor [N_texts]``, the image index of each caption; every image
            needs at least one caption.

    Returns:
        ``{"num_pairs": N_texts, "image_to_text": {"R@1", "R@5", "R@10", "mean_rank",
        "median_rank"}, "text_to_image": {...}}`` with recalls as fractions in ``[0, 1]``.
    """
    _check_features("image_features", image_features)
    _check_features("text_features", text_features)
    num_images, num_texts = image_features.shape[0], text_features.shape[0]
    if image_features.shape[1] != text_features.shape[1]:
        raise UserInputError(
            f"feature sizes differ: images {image_features.shape[1]}, "
            f"texts {text_features.shape[1]}"
        )
    text_to_image = torch.as_tensor(text_to_image, dtype=torch.long).to(image_features.device)
    if text_to_image.shape != (num_texts,):
        raise UserInputError(
            f"text_to_image must have one entry per caption ({num_texts}), "
            f"got shape {list(text_to_image.shape)}"
        )
    if num_images == 0 or num_texts == 0:
        raise UserInputError("retrieval needs at least one image and one caption")
    if int(text_to_image.min()) < 0 or int(text_to_image.max()) >= num_images:
        raise UserInputError(f"text_to_image values must be image indices in [0, {num_images})")
    captioned = torch.bincount(text_to_image, minlength=num_images)
    if bool((captioned == 0).any()):
        missing = int((captioned == 0).nonzero()[0])
        raise UserInputError(f"image {missing} has no caption; every image needs at least one")
    images = F.normalize(image_features.float(), dim=-1)
    texts = F.normalize(text_features.float(), dim=-1)
    return {
        "num_pairs": num_texts,
        "image_to_text": _summary(image_to_text_ranks(images, texts, text_to_image), ks),
        "text_to_image": _summary(text_to_image_ranks(images, texts, text_to_image), ks),
    }


def zero_shot_accuracy(
    image_features: torch.Tensor,
    class_text_features: torch.Tensor,
    labels: torch.Tensor,
    k: int = 1,
) -> float:
    """Fraction of images whose class prompt is among the ``k`` most similar (ties pessimistic).

    ``class_text_features[c]`` embeds class ``c``'s prompt (average several prompt embeddings
    per class beforehand if wanted); ``labels`` holds each image's class index.
    """
    _check_features("image_features", image_features)
    _check_features("class_text_features", class_text_features)
    labels = torch.as_tensor(labels, dtype=torch.long).to(image_features.device)
    if labels.shape != (image_features.shape[0],):
        raise UserInputError(
            f"labels must have one entry per image ({image_features.shape[0]}), "
            f"got shape {list(labels.shape)}"
        )
    num_classes = class_text_features.shape[0]
    if labels.numel() == 0:
        raise UserInputError("zero-shot accuracy needs at least one image")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise UserInputError(f"labels must be class indices in [0, {num_classes})")
    ranks = text_to_image_ranks(
        F.normalize(class_text_features.float(), dim=-1),
        F.normalize(image_features.float(), dim=-1),
        labels,
    )
    return float((ranks <= k).double().mean())
