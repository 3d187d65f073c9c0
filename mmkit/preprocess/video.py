"""Video preprocessing: frame-index samplers and a batched clip transform.

Samplers answer "which frames of a clip of ``n`` frames?" as a LongTensor: pure functions
(:func:`uniform_indices`, :func:`random_clip_indices`, :func:`multi_clip_indices`) and the small
registered classes that wrap them (``uniform``, ``random_clip``, ``multi_clip``), each called as
``sampler(num_frames_in_clip, generator)``. A clip span longer than the video follows ``policy``:
``repeat_last`` (default; keeps time running forward, which motion classes need), ``wrap`` (loop
back to the start, MMAction2's default) or ``error``.

:class:`VideoTransform` (``video_transform``) turns uint8 ``[B, T, H, W, 3]`` on any device into
normalised float ``[B, 3, T, S, S]``: short-side resize, random crop (train) or centre crop (eval).
"""

from __future__ import annotations

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
    """

    def __init__(
        self,
        *,
        size: int = 64,
        short_side: int | None = None,
        hflip: bool = False,
        mean: tuple[float, float, float] | list[float] = KINETICS_MEAN,
        std: tuple[float, float, float] | list[float] = KINETICS_STD,
    ) -> None:
        super().__init__()
        _positive("size", size)
        short_side = round(size * 8 / 7) if short_side is None else short_side
        _positive("short_side", short_side)
        if short_side < size:
            raise UserInputError(f"short_side ({short_side}) must be >= size ({size})")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise UserInputError(f"mean and std need 3 values with std > 0, got {mean}, {std}")
        self.size, self.short_side, self.hflip = size, short_side, bool(hflip)
        self.mean_values, self.std_values = [float(m) for m in mean], [float(s) for s in std]
        self.register_buffer("mean", torch.tensor(self.mean_values).view(1, 3, 1, 1, 1), False)
        self.register_buffer("std", torch.tensor(self.std_values).view(1, 3, 1, 1, 1), False)

    def params(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-serialisable) that rebuild this transform."""
        return {
            "size": self.size,
            "short_side": self.short_side,
            "hflip": self.hflip,
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
        b, _, _, h, w = x.shape
        s = self.size
        flip = torch.zeros(b, dtype=torch.bool)
        if self.training:
            gen = generator
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
        out = crops.permute(0, 4, 3, 1, 2)  # [B, 3, T, s, s]
        return ((out - self.mean) / self.std).contiguous()
