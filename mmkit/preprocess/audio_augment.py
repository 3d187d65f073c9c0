"""Waveform augmentations on ``[B, T]`` batches, for robustness to real-world recordings.

``noise_mix``, ``random_gain``, ``time_shift``, ``band_limit`` and ``random_trim`` each draw from
the global torch RNG on the input's device (``band_limit``'s few per-chunk choices: on the host,
so a GPU is never waited for; seed both with ``torch.manual_seed``) and are the identity in eval
mode; ``wave_augment`` chains them with defaults meant for spoken-word classification.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torchaudio.functional as AF
from torch import nn

from mmkit.preprocess.audio import ParamsModule, _check_batch, _check_range, _uniform
from mmkit.preprocess.audio_channel import PhoneChannel, RoomReverb, SpeedPerturb
from mmkit.registry import register_preprocessor

NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def colored_noise(exponents: torch.Tensor, length: int) -> torch.Tensor:
    """Unit-RMS noise ``[B, length]`` with power spectrum ~ 1 / f**exponent per row
    (0 white, 1 pink, 2 brown), on the device of ``exponents``."""
    device = exponents.device
    noise = torch.randn(exponents.numel(), length, device=device)
    if length > 2:
        freqs = torch.fft.rfftfreq(length, device=device)
        freqs[0] = freqs[1]
        spectrum = torch.fft.rfft(noise) * freqs.pow(-exponents.float()[:, None] / 2)
        noise = torch.fft.irfft(spectrum, n=length)
        noise = noise - noise.mean(dim=-1, keepdim=True)
    return noise / noise.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)


@register_preprocessor("noise_mix", modality="audio")
class NoiseMix(ParamsModule):
    """Add noise to each example with probability ``p`` at an SNR drawn from ``snr_db``.

    Noise comes from a bank set by :meth:`set_noise_bank` (e.g. a dataset's
    ``_background_noise_`` clips; a random clip and offset per example), else it is generated
    white/pink/brown noise (``colors``). The bank is a non-persistent buffer: it follows
    ``.to(device)`` but is not saved in checkpoints.
    """

    def __init__(
        self,
        *,
        snr_db: Sequence[float] = (5.0, 25.0),
        p: float = 0.5,
        colors: Sequence[str] = ("white", "pink", "brown"),
    ) -> None:
        super().__init__(snr_db=snr_db, p=p, colors=colors)
        _check_range("snr_db", snr_db)
        unknown = sorted(set(colors) - set(NOISE_EXPONENTS))
        if unknown or not colors:
            raise ValueError(f"colors must be a non-empty subset of {list(NOISE_EXPONENTS)}")
        self.snr_db = tuple(float(s) for s in snr_db)
        self.p = float(p)
        self.register_buffer(
            "exponents", torch.tensor([NOISE_EXPONENTS[c] for c in colors]), persistent=False
        )
        self.register_buffer("noise_bank", torch.zeros(0, 0), persistent=False)

    def set_noise_bank(self, noise: torch.Tensor | None) -> None:
        """Use ``noise`` (``[N, L]`` or ``[L]`` float) as the noise source; ``None`` clears it."""
        if noise is None:
            self.noise_bank = torch.zeros(0, 0, device=self.noise_bank.device)
            return
        bank = torch.as_tensor(noise, dtype=torch.float32)
        bank = bank.unsqueeze(0) if bank.dim() == 1 else bank
        if bank.dim() != 2 or bank.numel() == 0 or not torch.isfinite(bank).all():
            raise ValueError(f"noise bank must be a finite [N, L] tensor, got {tuple(bank.shape)}")
        self.noise_bank = bank.to(self.noise_bank.device)

    def _bank_noise(self, batch: int, length: int, device: torch.device) -> torch.Tensor:
        bank = self.noise_bank
        if bank.shape[1] < length:
            bank = bank.repeat(1, math.ceil(length / bank.shape[1]))
        clip = torch.randint(bank.shape[0], (batch, 1), device=device)
        span = bank.shape[1] - length + 1
        offset = (torch.rand(batch, 1, device=device) * span).long().clamp_max(span - 1)
        return bank[clip, offset + torch.arange(length, device=device)]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_batch(wave, 2, "a waveform batch [B, T]", "noise_mix")
        if not self.training or self.p <= 0:
            return wave
        batch, length = wave.shape
        if self.noise_bank.numel():
            noise = self._bank_noise(batch, length, wave.device)
        else:
            pick = torch.randint(self.exponents.numel(), (batch,), device=wave.device)
            noise = colored_noise(self.exponents[pick], length)
        snr = _uniform(self.snr_db, batch, wave.device)[:, None]
        signal_power = wave.pow(2).mean(dim=-1, keepdim=True)
        noise_power = noise.pow(2).mean(dim=-1, keepdim=True).clamp_min(1e-10)
        scale = torch.sqrt(signal_power / (noise_power * 10.0 ** (snr / 10.0)))
        apply = torch.rand(batch, 1, device=wave.device) < self.p
        return torch.where(apply, wave + scale * noise.to(wave.dtype), wave)


@register_preprocessor("random_gain", modality="audio")
class RandomGain(ParamsModule):
    """Scale each example with probability ``p`` by a gain drawn from ``gain_db`` (dB)."""

    def __init__(self, *, gain_db: Sequence[float] = (-8.0, 6.0), p: float = 1.0) -> None:
        super().__init__(gain_db=gain_db, p=p)
        _check_range("gain_db", gain_db)
        self.gain_db = tuple(float(g) for g in gain_db)
        self.p = float(p)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_batch(wave, 2, "a waveform batch [B, T]", "random_gain")
        if not self.training or self.p <= 0:
            return wave
        batch = wave.shape[0]
        gain_db = _uniform(self.gain_db, batch, wave.device)
        gain_db = torch.where(torch.rand(batch, device=wave.device) < self.p, gain_db, 0.0)
        return wave * (10.0 ** (gain_db / 20.0))[:, None].to(wave.dtype)


@register_preprocessor("time_shift", modality="audio")
class TimeShift(ParamsModule):
    """Shift each example in time by up to ``max_shift`` of its length, with zero fill.

    With probability ``p`` per example, either way; vacated samples become 0 (no wrap-around).
    """

    def __init__(self, *, max_shift: float = 0.1, p: float = 1.0) -> None:
        super().__init__(max_shift=max_shift, p=p)
        if not 0.0 <= max_shift < 1.0:
            raise ValueError(f"max_shift ({max_shift}) must be in [0, 1)")
        self.max_shift = float(max_shift)
        self.p = float(p)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_batch(wave, 2, "a waveform batch [B, T]", "time_shift")
        if not self.training or self.p <= 0 or self.max_shift == 0:
            return wave
        batch, length = wave.shape
        limit = self.max_shift * length
        shift = _uniform((-limit, limit), batch, wave.device).round().long()
        shift = torch.where(torch.rand(batch, device=wave.device) < self.p, shift, 0)
        source = torch.arange(length, device=wave.device) - shift[:, None]
        valid = (source >= 0) & (source < length)
        shifted = wave.gather(1, source.clamp(0, length - 1))
        return torch.where(valid, shifted, torch.zeros((), dtype=wave.dtype, device=wave.device))


@register_preprocessor("band_limit", modality="audio")
class BandLimit(ParamsModule):
    """Random band-limiting, like cheap microphones, phone lines and low sample rates.

    The batch is cut into ``chunks``; each chunk, with probability ``p``, gets one of: a torchaudio
    biquad low-pass (cutoff in ``lowpass_hz``), a biquad high-pass (cutoff in ``highpass_hz``), or
    a round trip through a lower sample rate from ``resample_hz`` (a brick-wall cut at half that
    rate, as in audio recorded at 8 kHz and resampled). ``mix`` holds the relative chances of the
    three. Like an ADC, the output is clipped to [-1, 1].
    """

    KINDS = ("lowpass", "highpass", "resample")

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        p: float = 0.3,
        lowpass_hz: Sequence[float] = (1500.0, 5000.0),
        highpass_hz: Sequence[float] = (100.0, 600.0),
        resample_hz: Sequence[int] = (8000, 11025),
        mix: Sequence[float] = (1.0, 1.0, 0.0),
        chunks: int = 4,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate,
            p=p,
            lowpass_hz=lowpass_hz,
            highpass_hz=highpass_hz,
            resample_hz=resample_hz,
            mix=mix,
            chunks=chunks,
        )
        for name, bounds in (("lowpass_hz", lowpass_hz), ("highpass_hz", highpass_hz)):
            _check_range(name, bounds)
            if not (bounds[0] > 0 and bounds[1] < sample_rate / 2):
                raise ValueError(
                    f"{name} must lie in (0, {sample_rate / 2:g}) Hz, got {list(bounds)}"
                )
        if not resample_hz or not all(0 < r < sample_rate for r in resample_hz):
            raise ValueError(
                f"resample_hz must be rates in (0, {sample_rate}) Hz, got {list(resample_hz)}"
            )
        if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
            raise ValueError(
                f"mix must be 3 non-negative numbers (lowpass, highpass, resample), "
                f"not all 0, got {list(mix)}"
            )
        if chunks < 1:
            raise ValueError(f"chunks ({chunks}) must be >= 1")
        self.sample_rate = int(sample_rate)
        self.p = float(p)
        self.lowpass_hz = tuple(float(f) for f in lowpass_hz)
        self.highpass_hz = tuple(float(f) for f in highpass_hz)
        self.resample_hz = tuple(int(r) for r in resample_hz)
        total = float(sum(mix))
        self.cumulative = tuple(float(sum(mix[: i + 1])) / total for i in range(3))
        self.chunks = int(chunks)

    def _filter(self, piece: torch.Tensor, kind: str, where: float) -> torch.Tensor:
        if kind == "resample":
            rate = self.resample_hz[
                min(int(where * len(self.resample_hz)), len(self.resample_hz) - 1)
            ]
            down = AF.resample(piece.float(), self.sample_rate, rate)
            up = AF.resample(down, rate, self.sample_rate)[:, : piece.shape[1]]
            return torch.nn.functional.pad(up, (0, piece.shape[1] - up.shape[1])).clamp(-1.0, 1.0)
        filt, (lo, hi) = (
            (AF.lowpass_biquad, self.lowpass_hz)
            if kind == "lowpass"
            else (AF.highpass_biquad, self.highpass_hz)
        )
        return filt(piece, self.sample_rate, lo + (hi - lo) * where)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_batch(wave, 2, "a waveform batch [B, T]", "band_limit")
        if not self.training or self.p <= 0:
            return wave
        pieces = wave.chunk(self.chunks, dim=0)
        draws = torch.rand(len(pieces), 3).tolist()  # on the host: no wait for a GPU per step
        out = []
        for piece, (apply, pick, where) in zip(pieces, draws, strict=True):
            if apply >= self.p:
                out.append(piece)
                continue
            kind = next(k for k, c in zip(self.KINDS, self.cumulative, strict=True) if pick < c)
            out.append(self._filter(piece, kind, where).to(wave.dtype))
        return torch.cat(out, dim=0)


@register_preprocessor("random_trim", modality="audio")
class RandomTrim(ParamsModule):
    """Make examples look like recordings shorter than the clip, zero-padded to its length.

    With probability ``p`` per example, everything outside a random window is set to 0. The window
    is at least ``min_seconds`` long and always covers the 10 ms frames within ``threshold_db`` of
    the loudest one (the word). Evaluation and inference zero-pad a short file to the training
    duration; after noise mixing, this stage shows the model the same thing in training: noise and
    speech in the middle, digital silence at the edges.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        p: float = 0.5,
        min_seconds: float = 0.4,
        threshold_db: float = 25.0,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate, p=p, min_seconds=min_seconds, threshold_db=threshold_db
        )
        if min_seconds <= 0:
            raise ValueError(f"min_seconds ({min_seconds}) must be > 0")
        self.hop = max(1, int(sample_rate) // 100)
        self.p = float(p)
        self.min_frames = max(1, round(min_seconds * sample_rate / self.hop))
        self.threshold = 10.0 ** (-float(threshold_db) / 10.0)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_batch(wave, 2, "a waveform batch [B, T]", "random_trim")
        if not self.training or self.p <= 0:
            return wave
        batch, length = wave.shape
        frames = -(-length // self.hop)
        padded = torch.nn.functional.pad(wave.float(), (0, frames * self.hop - length))
        energy = padded.reshape(batch, frames, self.hop).pow(2).mean(-1)
        loud = energy >= energy.amax(-1, keepdim=True) * self.threshold
        index = torch.arange(frames, device=wave.device)
        first = torch.where(loud, index, frames).amin(-1)
        last = torch.where(loud, index, -1).amax(-1)
        active = last - first + 1
        low = torch.maximum(active, torch.full_like(active, min(self.min_frames, frames)))
        size = low + (torch.rand(batch, device=wave.device) * (frames - low + 1)).long()
        size = size.clamp_max(frames)
        # start in [last + 1 - size, first], inside the clip
        lo_start = (last + 1 - size).clamp_min(0)
        hi_start = torch.minimum(first, frames - size)
        span = (hi_start - lo_start + 1).clamp_min(1)
        start = lo_start + (torch.rand(batch, device=wave.device) * span).long().clamp_max(span - 1)
        sample = torch.arange(length, device=wave.device) // self.hop
        keep = (sample >= start[:, None]) & (sample < (start + size)[:, None])
        apply = torch.rand(batch, 1, device=wave.device) < self.p
        return torch.where(
            keep | ~apply, wave, torch.zeros((), dtype=wave.dtype, device=wave.device)
        )


@register_preprocessor("wave_augment", modality="audio")
class WaveAugment(nn.Sequential):
    """The default waveform augmentation: time_shift -> speed_perturb -> room_reverb -> noise_mix
    -> band_limit -> phone_channel -> random_trim -> random_gain.

    Each of ``shift``, ``speed``, ``reverb``, ``noise``, ``band``, ``phone``, ``trim`` and
    ``gain`` is a dict of that module's keyword arguments, laid over :attr:`STAGE_DEFAULTS`
    (``{"p": 0}`` disables a stage). ``speed``, ``reverb``, ``band``, ``phone`` and ``trim`` get
    ``sample_rate``. The chain's defaults differ from the single modules' where the
    cross-engine protocol (benchmarks/RESULTS-audio.md) measured a gain on speech from unseen
    voices, engines and formats: noise on 4 examples in 5, band-limiting on half (half of those a
    round trip through 8 or 11.025 kHz, as in telephone or low-rate recordings) and half of the
    examples trimmed to a shorter recording padded with digital silence, and a mild room
    reverberation on a quarter (RT60 0.1-0.5 s, direct-to-reverberant 3-15 dB): with 60 epochs
    it lifted simulated rooms and FSDD-like home recordings without a loss on the engines' test
    sets (RESULTS-audio.md, "New defaults"). ``speed`` and ``phone`` are off: on that protocol's
    recording conditions each gained on what it imitates and lost as much elsewhere.
    """

    STAGE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "shift": {},
        "speed": {"p": 0.0},
        "reverb": {"p": 0.25, "rt60": (0.1, 0.5), "drr_db": (3.0, 15.0)},
        "noise": {"p": 0.8},
        "band": {"p": 0.5, "mix": (1.0, 1.0, 2.0)},
        "phone": {"p": 0.0},
        "trim": {"p": 0.5},
        "gain": {},
    }
    STAGES: ClassVar[dict[str, type[nn.Module]]] = {
        "shift": TimeShift,
        "speed": SpeedPerturb,
        "reverb": RoomReverb,
        "noise": NoiseMix,
        "band": BandLimit,
        "phone": PhoneChannel,
        "trim": RandomTrim,
        "gain": RandomGain,
    }
    WITH_RATE = ("speed", "reverb", "band", "phone", "trim")

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        shift: dict[str, Any] | None = None,
        speed: dict[str, Any] | None = None,
        reverb: dict[str, Any] | None = None,
        noise: dict[str, Any] | None = None,
        band: dict[str, Any] | None = None,
        phone: dict[str, Any] | None = None,
        trim: dict[str, Any] | None = None,
        gain: dict[str, Any] | None = None,
    ) -> None:
        given = {"shift": shift, "speed": speed, "reverb": reverb, "noise": noise, "band": band}
        given.update(phone=phone, trim=trim, gain=gain)
        stages = OrderedDict()
        for name, cls in self.STAGES.items():
            kw = {**self.STAGE_DEFAULTS[name], **(given[name] or {})}
            if name in self.WITH_RATE:
                kw = {"sample_rate": sample_rate, **kw}
            stages[name] = cls(**kw)
        super().__init__(stages)
        self.sample_rate = int(sample_rate)

    def set_noise_bank(self, noise: torch.Tensor | None) -> None:
        """Give the ``noise_mix`` stage a noise bank (see :meth:`NoiseMix.set_noise_bank`)."""
        self.noise.set_noise_bank(noise)

    def params(self) -> dict[str, Any]:
        """The constructor keyword arguments, with every stage's full parameters."""
        return {
            "sample_rate": self.sample_rate,
            **{name: stage.params() for name, stage in self.named_children()},
        }
