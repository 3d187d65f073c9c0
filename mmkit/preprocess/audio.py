"""Audio features as batched modules: ``log_mel`` (waveform -> log-mel) and ``spec_augment``.

Each preprocessor is a small ``nn.Module`` over a torchaudio transform, built from JSON-serialisable
keyword arguments that :meth:`ParamsModule.params` returns, so a checkpoint's ``config.json``
rebuilds it exactly: ``create_preprocessor(name, **module.params())``. Waveform augmentations live
in :mod:`mmkit.preprocess.audio_augment` and :mod:`mmkit.preprocess.audio_channel`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import torch
import torchaudio.transforms as T
from torch import nn

from mmkit.errors import UserInputError
from mmkit.registry import register_preprocessor


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class ParamsModule(nn.Module):
    """A module that records its constructor keyword arguments as JSON-ready data."""

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._params = _jsonable(params)
        json.dumps(self._params)  # fail at construction, not when a checkpoint is written

    def params(self) -> dict[str, Any]:
        """The constructor keyword arguments (tuples as lists), to rebuild this module."""
        return copy.deepcopy(self._params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._params.items())


def _check_batch(x: torch.Tensor, dims: int, what: str, name: str) -> None:
    if x.dim() != dims:
        raise ValueError(f"{name} expects {what}, got shape {tuple(x.shape)}")


def _uniform(bounds: Sequence[float], size: int, device: torch.device) -> torch.Tensor:
    lo, hi = (float(b) for b in bounds)
    return lo + (hi - lo) * torch.rand(size, device=device)


def _check_range(name: str, bounds: Sequence[float]) -> None:
    if len(bounds) != 2 or bounds[0] > bounds[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {list(bounds)}")


@register_preprocessor("log_mel", modality="audio")
class LogMel(ParamsModule):
    """Waveform ``[B, T]`` -> log-mel spectrogram ``[B, 1, n_mels, T // hop_length + 1]`` in dB.

    ``top_db`` floors each example at its own peak minus ``top_db``; ``normalize`` then scales
    each example to zero mean and unit variance. Runs in float32 even under autocast.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 20.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        normalize: bool = True,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            top_db=top_db,
            normalize=normalize,
        )
        if win_length > n_fft:
            raise ValueError(f"win_length ({win_length}) must be <= n_fft ({n_fft})")
        for name, value, low, high in (
            ("sample_rate", sample_rate, 1000, 384_000),
            ("n_fft", n_fft, 8, 65_536),
            ("win_length", win_length, 1, 65_536),
            ("hop_length", hop_length, 1, 65_536),
            ("n_mels", n_mels, 1, 1024),
        ):
            if not low <= value <= high:
                raise UserInputError(f"log_mel: {name} must be in [{low}, {high}], got {value}")
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.normalize = normalize
        self.mel = T.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            power=2.0,
        )
        # torch.hann_window(n) is a view into n + 1 elements; safetensors refuses to save such a
        # buffer, so give it storage of its own.
        self.mel.spectrogram.window = self.mel.spectrogram.window.clone()
        self.to_db = T.AmplitudeToDB(stype="power", top_db=top_db)

    def num_frames(self, num_samples: int) -> int:
        """Spectrogram frames for a waveform of ``num_samples`` samples."""
        return num_samples // self.hop_length + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_batch(wave, 2, "a waveform batch [B, T]", "log_mel")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            # [B, 1, F, T]: AmplitudeToDB applies top_db per example only for 4-D input.
            spec = self.to_db(self.mel(wave.float()).unsqueeze(1))
            if self.normalize:
                mean = spec.mean(dim=(-2, -1), keepdim=True)
                std = spec.std(dim=(-2, -1), keepdim=True)
                spec = (spec - mean) / (std + 1e-5)
        return spec


@register_preprocessor("spec_augment", modality="audio")
class SpecAugment(ParamsModule):
    """SpecAugment on ``[B, 1, F, T]``: ``num_masks`` frequency and time masks per example.

    Masks are up to ``freq_mask`` bins and ``time_mask`` frames wide, drawn independently per
    example (``iid_masks``) from the global torch RNG on the input's device; masked cells become 0
    (the mean of a normalised log-mel). Identity in eval mode.
    """

    def __init__(self, *, freq_mask: int = 8, time_mask: int = 20, num_masks: int = 2) -> None:
        super().__init__(freq_mask=freq_mask, time_mask=time_mask, num_masks=num_masks)
        if min(freq_mask, time_mask, num_masks) < 0:
            raise ValueError("freq_mask, time_mask and num_masks must be >= 0")
        self.num_masks = num_masks
        self.freq = T.FrequencyMasking(freq_mask, iid_masks=True)
        self.time = T.TimeMasking(time_mask, iid_masks=True)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        _check_batch(spec, 4, "a spectrogram batch [B, C, F, T]", "spec_augment")
        if not self.training:
            return spec
        for _ in range(self.num_masks):
            spec = self.time(self.freq(spec))
        return spec
