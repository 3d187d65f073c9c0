"""Batched image preprocessing on the training device: crop, resize, normalise.

:class:`ImageTransform` (registered as ``image_transform``) turns ``uint8 [B, H, W, 3]`` images
into normalised ``float [B, 3, S, S]``. Every crop is taken inside the image's centred square, then
resampled to ``S x S`` with ``torchvision.ops.roi_align`` (bilinear, averaging several samples per
output pixel when shrinking, so it is antialiased and one kernel call for the whole batch):

- eval mode: the whole centred square (short-side resize + centre crop). When the input already is
  ``S x S`` this is exactly the identity before normalisation.
- train mode: a mild random resized crop of that square (area fraction in ``scale``, aspect ratio
  in ``ratio``), so "on the left" stays on the left. Horizontal flips (``hflip``) and colour jitter
  (``color_jitter``) are off by default because captions name sides and colours.

Random choices draw from a CPU ``torch.Generator`` seeded with ``seed`` (or the ``generator``
passed to ``forward``), so a run is reproducible on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mmkit.errors import UserInputError
from mmkit.registry import register_preprocessor

# open_clip.constants.OPENAI_DATASET_MEAN/STD, written out so importing mmkit skips open_clip
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def _pair(name: str, value: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    if len(value) != 2 or not lo < value[0] <= value[1] <= hi:
        raise UserInputError(f"{name} must be two numbers {lo} < a <= b <= {hi}, got {list(value)}")
    return float(value[0]), float(value[1])


def _triple(name: str, value: Sequence[float], positive: bool) -> tuple[float, float, float]:
    if len(value) != 3 or (positive and min(value) <= 0):
        kind = "positive numbers" if positive else "numbers"
        raise UserInputError(f"{name} must be three {kind} (R, G, B), got {list(value)}")
    return float(value[0]), float(value[1]), float(value[2])


@register_preprocessor("image_transform", modality="image")
class ImageTransform(nn.Module):
    """Batched crop + resize + normalise of uint8 images to CLIP-ready float tensors.

    ``uint8 [B, H, W, 3]`` (any device) -> normalised ``float32 [B, 3, size, size]``.

    Args:
        size: output side ``S``.
        mean, std: per-channel normalisation of ``[0, 1]`` pixels (CLIP's by default).
        scale: train-mode crop area as a fraction of the centred square, ``(min, max)``.
        ratio: train-mode crop aspect ratio range (width / height).
        hflip: train-mode probability of a horizontal flip (0: never; captions name sides).
        color_jitter: train-mode strength ``j`` of brightness, contrast and saturation factors
            drawn from ``[1 - j, 1 + j]`` (0: off; captions name colours).
        seed: seed of the transform's own generator.

    Train or eval behaviour follows ``module.train()`` / ``module.eval()``.
    """

    def __init__(
        self,
        *,
        size: int = 64,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        scale: Sequence[float] = (0.85, 1.0),
        ratio: Sequence[float] = (0.9, 1.0 / 0.9),
        hflip: float = 0.0,
        color_jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if int(size) <= 0:
            raise UserInputError(f"size ({size}) must be > 0")
        if not 0.0 <= hflip <= 1.0:
            raise UserInputError(f"hflip ({hflip}) must be a probability in [0, 1]")
        if not 0.0 <= color_jitter < 1.0:
            raise UserInputError(f"color_jitter ({color_jitter}) must be in [0, 1)")
        self.size = int(size)
        self.mean = _triple("mean", mean, positive=False)
        self.std = _triple("std", std, positive=True)
        self.scale = _pair("scale", scale, 0.0, 1.0)
        self.ratio = _pair("ratio", ratio, 0.0, math.inf)
        self.hflip = float(hflip)
        self.color_jitter = float(color_jitter)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments: ``ImageTransform(**t.params())`` rebuilds it."""
        return {
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": list(self.scale),
            "ratio": list(self.ratio),
            "hflip": self.hflip,
            "color_jitter": self.color_jitter,
            "seed": self.seed,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params().items())

    def _boxes(self, batch: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
        """``[B, 4]`` crop boxes ``(x0, y0, x1, y1)`` in pixel units, inside the centred square."""
        side = float(min(height, width))
        sx, sy = (width - side) / 2, (height - side) / 2
        if not self.training:
            return torch.tensor([[sx, sy, sx + side, sy + side]]).expand(batch, 4)
        area = torch.empty(batch).uniform_(*self.scale, generator=gen) * side * side
        log_ratio = torch.empty(batch).uniform_(*map(math.log, self.ratio), generator=gen)
        aspect = log_ratio.exp()
        crop_w = (area * aspect).sqrt().clamp(max=side)
        crop_h = (area / aspect).sqrt().clamp(max=side)
        x0 = sx + torch.rand(batch, generator=gen) * (side - crop_w)
        y0 = sy + torch.rand(batch, generator=gen) * (side - crop_h)
        return torch.stack([x0, y0, x0 + crop_w, y0 + crop_h], dim=1)

    def _jitter(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Per-sample brightness, contrast and saturation factors in ``[1 - j, 1 + j]``."""
        j = self.color_jitter
        factors = torch.empty(3, x.shape[0], 1, 1, 1).uniform_(1 - j, 1 + j, generator=gen)
        brightness, contrast, saturation = factors.to(x.device, non_blocking=True)
        x = (x * brightness).clamp(0, 1)
        mean_gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).mean(
            dim=(2, 3), keepdim=True
        )
        x = ((x - mean_gray) * contrast + mean_gray).clamp(0, 1)
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        return ((x - gray) * saturation + gray).clamp(0, 1)

    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Crop, resize and normalise a batch; ``generator`` overrides the module's own."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise UserInputError(
                f"image_transform expects uint8 [B, H, W, 3], got {images.dtype} "
                f"{list(images.shape)}"
            )
        batch, height, width, _ = images.shape
        gen = self.generator if generator is None else generator
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        if batch == 0:
            return x.new_zeros(0, 3, self.size, self.size)
        boxes = self._boxes(batch, height, width, gen)
        rois = torch.cat([torch.arange(batch, dtype=boxes.dtype)[:, None], boxes], dim=1)
        from torchvision.ops import roi_align  # lazy: torchvision.ops pulls in torch._dynamo

        x = roi_align(
            x,
            rois.to(x.device, non_blocking=True),
            output_size=(self.size, self.size),
            spatial_scale=1.0,
            sampling_ratio=-1,
            aligned=True,
        )
        if self.training and self.hflip > 0:
            flip = (torch.rand(batch, generator=gen) < self.hflip).to(x.device, non_blocking=True)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.training and self.color_jitter > 0:
            x = self._jitter(x, gen)
        return (x - self._mean) / self._std
