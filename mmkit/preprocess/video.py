"""Video preprocessing: frame-index samplers and a batched clip transform.

Samplers answer "which frames of a clip of ``n`` frames?" as a LongTensor: pure functions
(:func:`uniform_indices`, :func:`random_clip_indices`, :func:`multi_clip_indices`) and the small
registered classes that wrap them (``uniform``, ``random_clip``, ``multi_clip``), each called as
``sampler(num_frames_in_clip, generator)``. A clip span longer than the video follows ``policy``:
``repeat_last`` (default; keeps time running forward, which motion classes need), ``wrap`` (loop
back to the start, MMAction2's default) or ``error``.

:class:`VideoTransform` (``video_transform``) turns uint8 ``[B, T, H, W, 3]`` on any device into
normalised float ``[B, 3, T, S, S]``: short-side resize, random crop (train) or centre crop (eval);
in train mode optionally a random-resized crop (``crop_scale``) and colour jitter.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmkit.errors import UserInputError
from mmkit.io.video import even_indices
from mmkit.registry import register_preprocessor

POLICIES = ("repeat_last", "wrap", "error")
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)  # torchvision's video models (Kinetics-400)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601 weights, as torchvision's grayscale


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UserInputError(f"{name} ({value}) must be > 0")


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise UserInputError(f"policy ({policy!r}) must be one of {', '.join(POLICIES)}")


def _fit(indices: torch.Tensor, num_frames_in_clip: int, policy: str) -> torch.Tensor:
    """Bring indices past the last frame back into the clip according to ``policy``."""
    if int(indices.max()) < num_frames_in_clip:
        return indices
    if policy == "error":
        span = int(indices.max()) + 1
        raise UserInputError(
            f"clip span ({span} frames) exceeds the video ({num_frames_in_clip} frames); "
            "use policy='repeat_last' or 'wrap'"
        )
    if policy == "wrap":
        return indices % num_frames_in_clip
    return indices.clamp(max=num_frames_in_clip - 1)


def uniform_indices(num_frames_in_clip: int, num_frames: int) -> torch.Tensor:
    """``num_frames`` indices evenly over the whole clip (segment centres; short clips repeat)."""
    _positive("num_frames_in_clip", num_frames_in_clip)
    _positive("num_frames", num_frames)
    return torch.from_numpy(even_indices(num_frames_in_clip, num_frames))


def random_clip_indices(
    num_frames_in_clip: int,
    clip_len: int,
    frame_interval: int = 1,
    *,
    generator: torch.Generator | None = None,
    policy: str = "repeat_last",
) -> torch.Tensor:
    """``clip_len`` frames ``frame_interval`` apart from a random start (training sampling)."""
    _positive("num_frames_in_clip", num_frames_in_clip)
    _positive("clip_len", clip_len)
    _positive("frame_interval", frame_interval)
    _check_policy(policy)
    span = (clip_len - 1) * frame_interval + 1
    high = max(num_frames_in_clip - span, 0) + 1
    start = int(torch.randint(high, (1,), generator=generator))
    return _fit(start + torch.arange(clip_len) * frame_interval, num_frames_in_clip, policy)


def multi_clip_indices(
    num_frames_in_clip: int,
    num_clips: int,
    clip_len: int,
    frame_interval: int = 1,
    *,
    policy: str = "repeat_last",
) -> torch.Tensor:
    """``[num_clips, clip_len]`` indices of clips evenly spaced over the video (test-time views).

    Clip starts are the centres of ``num_clips`` equal segments of the valid start range, as in
    MMAction2's ``SampleFrames(test_mode=True)``.
    """
    _positive("num_frames_in_clip", num_frames_in_clip)
    _positive("num_clips", num_clips)
    _positive("clip_len", clip_len)
    _positive("frame_interval", frame_interval)
    _check_policy(policy)
    span = (clip_len - 1) * frame_interval + 1
    starts_range = max(num_frames_in_clip - span, 0) + 1
    starts = ((torch.arange(num_clips) + 0.5) * starts_range / num_clips).long()
    grid = starts[:, None] + torch.arange(clip_len)[None, :] * frame_interval
    return _fit(grid, num_frames_in_clip, policy)


class _Sampler:
    """Base of the registered samplers: ``params()`` returns the constructor kwargs."""

    def __init__(self, **params: Any) -> None:
        self._params = params

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"


@register_preprocessor("uniform", modality="video", tags=("sampler",))
class UniformSampler(_Sampler):
    """Frame sampler: ``num_frames`` indices evenly over the whole clip (deterministic)."""

    def __init__(self, *, num_frames: int = 16) -> None:
        _positive("num_frames", num_frames)
        super().__init__(num_frames=num_frames)
        self.num_frames = num_frames

    def __call__(
        self, num_frames_in_clip: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return uniform_indices(num_frames_in_clip, self.num_frames)


@register_preprocessor("random_clip", modality="video", tags=("sampler",))
class RandomClipSampler(_Sampler):
    """Frame sampler: one clip of ``clip_len`` frames at a random start (training)."""

    def __init__(
        self, *, clip_len: int = 16, frame_interval: int = 1, policy: str = "repeat_last"
    ) -> None:
        _positive("clip_len", clip_len)
        _positive("frame_interval", frame_interval)
        _check_policy(policy)
        super().__init__(clip_len=clip_len, frame_interval=frame_interval, policy=policy)
        self.clip_len, self.frame_interval, self.policy = clip_len, frame_interval, policy

    def __call__(
        self, num_frames_in_clip: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return random_clip_indices(
            num_frames_in_clip,
            self.clip_len,
            self.frame_interval,
            generator=generator,
            policy=self.policy,
        )


@register_preprocessor("multi_clip", modality="video", tags=("sampler",))
class MultiClipSampler(_Sampler):
    """Frame sampler: ``[num_clips, clip_len]`` evenly spaced clips for test-time averaging."""

    def __init__(
        self,
        *,
        num_clips: int = 3,
        clip_len: int = 16,
        frame_interval: int = 1,
        policy: str = "repeat_last",
    ) -> None:
        _positive("num_clips", num_clips)
        _positive("clip_len", clip_len)
        _positive("frame_interval", frame_interval)
        _check_policy(policy)
        super().__init__(
            num_clips=num_clips, clip_len=clip_len, frame_interval=frame_interval, policy=policy
        )
        self.num_clips, self.clip_len = num_clips, clip_len
        self.frame_interval, self.policy = frame_interval, policy

    def __call__(
        self, num_frames_in_clip: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return multi_clip_indices(
            num_frames_in_clip,
            self.num_clips,
            self.clip_len,
            self.frame_interval,
            policy=self.policy,
        )


@register_preprocessor("video_transform", modality="video")
class VideoTransform(nn.Module):
    """uint8 clips ``[B, T, H, W, 3]`` -> normalised float ``[B, 3, T, size, size]``, batched.

    Short side resized to ``short_side`` (default ``round(size * 8 / 7)``, MMAction2's 128 -> 112
    ratio) with antialiased bilinear interpolation, then a ``size`` square crop: random per clip in
    train mode, centred in eval mode. ``hflip`` (train only, p=0.5 per clip) is off by default: it
    swaps left and right motion. Randomness comes from the global torch RNG (seeded by the trainer
    and saved in checkpoints, so ``--resume`` repeats the same crops) or the generator passed to
    ``forward``. Float input is taken as already in 0..1.

    Train-mode options (off by default; eval is never touched): ``crop_scale=(lo, hi)`` takes a
    random-resized crop instead, as torchvision's ``RandomResizedCrop``: an area fraction in
    ``[lo, hi]`` of the resized frame and an aspect ratio in [3/4, 4/3], one box per clip held over
    all its frames (so apparent speed and object size vary, the direction of motion does not),
    resampled bilinearly to ``size``. ``color_jitter=j`` scales brightness, contrast and
    saturation of each clip by random factors in ``[1 - j, 1 + j]``.
    """

    def __init__(
        self,
        *,
        size: int = 64,
        short_side: int | None = None,
        hflip: bool = False,
        crop_scale: tuple[float, float] | list[float] | None = None,
        color_jitter: float = 0.0,
        mean: tuple[float, float, float] | list[float] = KINETICS_MEAN,
        std: tuple[float, float, float] | list[float] = KINETICS_STD,
    ) -> None:
        super().__init__()
        _positive("size", size)
        if crop_scale is not None:
            if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
                raise UserInputError(
                    f"crop_scale ({list(crop_scale)}) must be [min, max] with 0 < min <= max <= 1"
                )
            crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        if not 0 <= color_jitter < 1:
            raise UserInputError(f"color_jitter ({color_jitter}) must be in [0, 1)")
        short_side = round(size * 8 / 7) if short_side is None else short_side
        _positive("short_side", short_side)
        if short_side < size:
            raise UserInputError(f"short_side ({short_side}) must be >= size ({size})")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise UserInputError(f"mean and std need 3 values with std > 0, got {mean}, {std}")
        self.size, self.short_side, self.hflip = size, short_side, bool(hflip)
        self.crop_scale, self.color_jitter = crop_scale, float(color_jitter)
        self.mean_values, self.std_values = [float(m) for m in mean], [float(s) for s in std]
        self.register_buffer("mean", torch.tensor(self.mean_values).view(1, 3, 1, 1, 1), False)
        self.register_buffer("std", torch.tensor(self.std_values).view(1, 3, 1, 1, 1), False)

    def params(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-serialisable) that rebuild this transform."""
        return {
            "size": self.size,
            "short_side": self.short_side,
            "hflip": self.hflip,
            "crop_scale": list(self.crop_scale) if self.crop_scale else None,
            "color_jitter": self.color_jitter,
            "mean": list(self.mean_values),
            "std": list(self.std_values),
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params().items())

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` float -> short side ``short_side``."""
        b, t, c, h, w = x.shape
        h, w = int(h), int(w)  # plain ints when traced too (TorchScript export fixes the size)
        scale = self.short_side / min(h, w)
        out_hw = (
            (self.short_side, round(w * scale)) if h <= w else (round(h * scale), self.short_side)
        )
        if out_hw == (h, w):
            return x
        y = F.interpolate(
            x.reshape(b * t, c, h, w), size=out_hw, mode="bilinear", antialias=True,
            align_corners=False,
        )  # fmt: skip
        return y.reshape(b, t, c, *out_hw)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 5 or x.shape[-1] != 3:
            raise UserInputError(f"expected uint8 clips [B, T, H, W, 3], got {tuple(x.shape)}")
        x = x.permute(0, 1, 4, 2, 3)
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        x = self._resize(x)
        if self.training and self.crop_scale is not None:
            out = self._resized_crop(x, generator)
        else:
            out = self._crop(x, generator)
        if self.training and self.color_jitter > 0:
            out = self._jitter(out, generator)
        return ((out - self.mean) / self.std).contiguous()

    def _crop(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> ``[B, 3, T, s, s]``: a random (train) or centre (eval) window."""
        b, _, _, h, w = x.shape
        s = self.size
        flip = torch.zeros(b, dtype=torch.bool)
        if self.training:
            top = torch.randint(h - s + 1, (b,), generator=gen)
            left = torch.randint(w - s + 1, (b,), generator=gen)
            if self.hflip:
                flip = torch.rand(b, generator=gen) < 0.5
        else:
            top = torch.full((b,), (h - s) // 2)
            left = torch.full((b,), (w - s) // 2)
        steps = torch.arange(s)
        # drawn on the host; non_blocking: a plain copy would wait for the GPU's queue
        rows = (top[:, None] + steps).to(x.device, non_blocking=True)
        cols = torch.where(flip[:, None], left[:, None] + s - 1 - steps, left[:, None] + steps)
        cols = cols.to(x.device, non_blocking=True)
        batch = torch.arange(b, device=x.device)[:, None, None]
        # Advanced indexing on H and W gathers every clip's own crop in one op: [B, s, s, T, 3].
        crops = x.permute(0, 3, 4, 1, 2)[batch, rows[:, :, None], cols[:, None, :]]
        return crops.permute(0, 4, 3, 1, 2)  # [B, 3, T, s, s]

    def _resized_crop(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """One random box per clip (area fraction in ``crop_scale``, aspect in [3/4, 4/3]),
        resampled to ``size`` with one ``grid_sample`` for the whole batch."""
        b, t, c, h, w = x.shape
        lo, hi = self.crop_scale
        area = lo + (hi - lo) * torch.rand(b, generator=gen)
        log_ratio = math.log(3 / 4) + math.log(16 / 9) * torch.rand(b, generator=gen)
        ratio = log_ratio.exp()
        # box sides as fractions of the frame's width and height
        fw = ((area * h * w * ratio).sqrt() / w).clamp(max=1.0)
        fh = ((area * h * w / ratio).sqrt() / h).clamp(max=1.0)
        cx = (1 - fw) * (2 * torch.rand(b, generator=gen) - 1)
        cy = (1 - fh) * (2 * torch.rand(b, generator=gen) - 1)
        if self.hflip:
            fw = torch.where(torch.rand(b, generator=gen) < 0.5, -fw, fw)
        zero = torch.zeros(b)
        theta = torch.stack([fw, zero, cx, zero, fh, cy], 1).view(b, 2, 3).to(x)
        s = self.size
        grid = F.affine_grid(theta, [b, t * c, s, s], align_corners=False)
        out = F.grid_sample(
            x.reshape(b, t * c, h, w), grid, mode="bilinear", padding_mode="border",
            align_corners=False,
        )  # fmt: skip
        return out.view(b, t, c, s, s).transpose(1, 2)

    def _jitter(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Per-clip brightness, contrast and saturation factors in ``[1 - j, 1 + j]``."""
        b, j = x.shape[0], self.color_jitter
        factors = (1 + j * (2 * torch.rand(3, b, 1, 1, 1, 1, generator=gen) - 1)).to(x)
        bright, contrast, sat = factors
        x = x * bright
        gray = (x * _LUMA.to(x).view(1, 3, 1, 1, 1)).sum(1, keepdim=True)
        x = gray + (x - gray) * sat
        mean = gray.mean(dim=(2, 3, 4), keepdim=True)
        return ((x - mean) * contrast + mean).clamp(0.0, 1.0)
