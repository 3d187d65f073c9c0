"""Waveform augmentations for what separates real recordings from clean synthetic speech, on
``[B, T]`` batches: the room (``room_reverb``), the telephone channel (``phone_channel``) and the
talker's rate, pitch and vocal-tract length (``speed_perturb``).

Like the stages of :mod:`mmkit.preprocess.audio_augment`, each draws from the global torch RNG
(per-example draws on the input's device; per-chunk choices on the host, so a GPU is never
waited for), is the identity in eval mode, and is rebuilt from :meth:`params`.
``wave_augment`` chains them with the others.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torchaudio.functional as AF

from mmkit.preprocess.audio import ParamsModule, _check_batch, _check_range, _uniform
from mmkit.registry import register_preprocessor

# 60 dB of decay, the definition of RT60: exp(-LN_1000 * t / rt60) falls to 1e-3 at t = rt60
LN_1000 = math.log(1000.0)


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p ({p}) must be in [0, 1]")


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1, keepdim=True).sqrt()


def _fit(piece: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad ``[B, T']`` to ``[B, length]``, centred."""
    extra = piece.shape[1] - length
    if extra >= 0:
        return piece[:, extra // 2 : extra // 2 + length]
    return torch.nn.functional.pad(piece, (-extra // 2, -extra - (-extra // 2)))


@register_preprocessor("room_reverb", modality="audio")
class RoomReverb(ParamsModule):
    """Reverberate each example, with probability ``p``, in a simulated room.

    The impulse response is the statistical model of a diffuse room (Polack): a unit direct
    path followed by Gaussian noise that decays by 60 dB in ``rt60`` seconds, its level set by a
    direct-to-reverberant ratio drawn from ``drr_db`` (small: a distant talker), cut at
    ``max_seconds``. One response per example, drawn on the input's device; the convolution is
    an FFT over the batch. The result keeps each example's RMS, so level is left to
    ``random_gain``; the word keeps its place (the response starts with the direct path).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        p: float = 0.5,
        rt60: Sequence[float] = (0.2, 0.8),
        drr_db: Sequence[float] = (-3.0, 12.0),
        max_seconds: float = 0.5,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate, p=p, rt60=rt60, drr_db=drr_db, max_seconds=max_seconds
        )
        _check_p(p)
        _check_range("rt60", rt60)
        _check_range("drr_db", drr_db)
        if not rt60[0] > 0:
            raise ValueError(f"rt60 must be > 0 s, got {list(rt60)}")
        if not 0 < max_seconds <= 2.0:
            raise ValueError(f"max_seconds ({max_seconds}) must be in (0, 2]")
        self.p = float(p)
        self.rt60 = tuple(float(r) for r in rt60)
        self.drr_db = tuple(float(d) for d in drr_db)
        self.taps = max(2, round(max_seconds * sample_rate))
        self.sample_rate = int(sample_rate)

    def impulse_responses(self, batch: int, device: torch.device) -> torch.Tensor:
        """``[batch, taps]`` room responses, each with a direct path of 1 at tap 0."""
        t = torch.arange(self.taps, device=device) / self.sample_rate
        rt60 = _uniform(self.rt60, batch, device)[:, None]
        tail = torch.randn(batch, self.taps, device=device) * torch.exp(-LN_1000 * t / rt60)
        tail[:, 0] = 0.0
        drr = _uniform(self.drr_db, batch, device)[:, None]
        energy = tail.pow(2).sum(dim=-1, keepdim=True).clamp_min(1e-12)
        rir = tail * torch.sqrt(10.0 ** (-drr / 10.0) / energy)
        rir[:, 0] = 1.0
        return rir

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_batch(wave, 2, "a waveform batch [B, T]", "room_reverb")
        if not self.training or self.p <= 0:
            return wave
        batch, length = wave.shape
        rir = self.impulse_responses(batch, wave.device)
        n = length + self.taps
        x = wave.float()
        wet = torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(rir, n), n)[:, :length]
        wet = wet * (_rms(x) / _rms(wet).clamp_min(1e-8))
        apply = torch.rand(batch, 1, device=wave.device) < self.p
        return torch.where(apply, wet.to(wave.dtype), wave)


class _Chunked(ParamsModule, ABC):
    """A stage that treats the batch in ``chunks``, each with probability ``p`` and one setting
    drawn on the host (resampling per example would cost a kernel per example)."""

    def __init__(self, *, chunks: int, p: float, **params: object) -> None:
        super().__init__(chunks=chunks, p=p, **params)
        _check_p(p)
        if chunks < 1:
            raise ValueError(f"chunks ({chunks}) must be >= 1")
        self.chunks = int(chunks)
        self.p = float(p)

    @abstractmethod
    def apply_chunk(self, piece: torch.Tensor, draws: list[float]) -> torch.Tensor:
        """The stage on one chunk of the batch, with that chunk's ``draws``."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_batch(wave, 2, "a waveform batch [B, T]", type(self).__name__)
        if not self.training or self.p <= 0:
            return wave
        pieces = wave.chunk(self.chunks, dim=0)
        draws = torch.rand(len(pieces), 4).tolist()  # on the host: no wait for a GPU per step
        out = [
            self.apply_chunk(piece.float(), d[1:]).to(wave.dtype) if d[0] < self.p else piece
            for piece, d in zip(pieces, draws, strict=True)
        ]
        return torch.cat(out, dim=0)


def _between(bounds: Sequence[float], where: float) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * where


@register_preprocessor("phone_channel", modality="audio")
class PhoneChannel(_Chunked):
    """A telephone channel on each chunk of the batch, with probability ``p``.

    A round trip through ``rate`` Hz, a band-pass (soft FFT edges at a high-pass cutoff in
    ``low_hz`` and a low-pass one in ``high_hz``: 300-3400 Hz is the telephone band) and mu-law
    companding with ``bits`` of resolution drawn per chunk (8 is G.711; fewer, the coarser noise
    of low-bitrate codecs).
    Like an ADC, the signal is clipped to [-1, 1] before companding.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        p: float = 0.3,
        low_hz: Sequence[float] = (200.0, 400.0),
        high_hz: Sequence[float] = (3000.0, 3800.0),
        rate: int = 8000,
        bits: Sequence[int] = (5, 8),
        chunks: int = 4,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate, p=p, low_hz=low_hz, high_hz=high_hz, rate=rate,
            bits=bits, chunks=chunks,
        )  # fmt: skip
        _check_range("low_hz", low_hz)
        _check_range("high_hz", high_hz)
        _check_range("bits", bits)
        if not (low_hz[0] > 0 and high_hz[1] < min(rate, sample_rate) / 2):
            raise ValueError(
                f"low_hz and high_hz must lie in (0, {min(rate, sample_rate) / 2:g}) Hz, "
                f"got {list(low_hz)}, {list(high_hz)}"
            )
        if not (bits[0] >= 2 and bits[1] <= 16):
            raise ValueError(f"bits must lie in [2, 16], got {list(bits)}")
        self.sample_rate, self.rate = int(sample_rate), int(rate)
        self.low_hz = tuple(float(f) for f in low_hz)
        self.high_hz = tuple(float(f) for f in high_hz)
        self.bits = (int(bits[0]), int(bits[1]))

    def apply_chunk(self, piece: torch.Tensor, draws: list[float]) -> torch.Tensor:
        low, high, depth = draws
        x = AF.resample(piece, self.sample_rate, self.rate)
        n = x.shape[1]
        freqs = torch.fft.rfftfreq(n, 1.0 / self.rate, device=x.device)
        band = torch.sigmoid((freqs - _between(self.low_hz, low)) / 25.0)
        band = band * torch.sigmoid((_between(self.high_hz, high) - freqs) / 50.0)
        x = torch.fft.irfft(torch.fft.rfft(x) * band, n).clamp(-1.0, 1.0)
        bits = min(self.bits[1], self.bits[0] + int(depth * (self.bits[1] - self.bits[0] + 1)))
        x = AF.mu_law_decoding(AF.mu_law_encoding(x, 2**bits), 2**bits)
        return _fit(AF.resample(x, self.rate, self.sample_rate), piece.shape[1])


@register_preprocessor("speed_perturb", modality="audio")
class SpeedPerturb(_Chunked):
    """Play each chunk of the batch, with probability ``p``, ``factor`` times as fast
    (``factor`` drawn per chunk from ``factors``): rate, pitch and formants (the vocal tract's
    length) move together, as between talkers. A resampling; the result is centred, cropped or
    zero-padded to the clip length. Rates are rounded to 100 Hz to keep the kernels small."""

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        p: float = 0.5,
        factors: Sequence[float] = (0.85, 1.15),
        chunks: int = 4,
    ) -> None:
        super().__init__(sample_rate=sample_rate, p=p, factors=factors, chunks=chunks)
        _check_range("factors", factors)
        if not (factors[0] >= 0.5 and factors[1] <= 2.0):
            raise ValueError(f"factors must lie in [0.5, 2], got {list(factors)}")
        self.sample_rate = int(sample_rate)
        self.factors = tuple(float(f) for f in factors)

    def apply_chunk(self, piece: torch.Tensor, draws: list[float]) -> torch.Tensor:
        factor = _between(self.factors, draws[0])
        new_rate = max(100, round(self.sample_rate / factor / 100) * 100)
        if new_rate == self.sample_rate:
            return piece
        return _fit(AF.resample(piece, self.sample_rate, new_rate), piece.shape[1])
