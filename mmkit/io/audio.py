"""Audio decoding with soundfile: load, resample, mono mix-down, int16 storage, pad/crop, windows.

Decoding never goes through ``torchaudio.load`` or torchcodec: soundfile (libsndfile) reads WAV,
FLAC, OGG/Vorbis, Opus and MP3 from paths, bytes and file objects, and
:func:`torchaudio.functional.resample` changes the rate.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import soundfile as sf
import torch
import torchaudio.functional as AF

from mmkit.errors import MediaError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"}
)
"""File extensions (lower case, with the dot) treated as audio when a folder is scanned."""

_PAD_MODES = ("center", "random", "start")
_INT16_SCALE = 32768.0

AudioSource = str | Path | bytes | BinaryIO


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says: rate, channel count, length in frames and seconds."""

    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


def _describe(source: AudioSource) -> str:
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "name", "<stream>"))


def _open(source: AudioSource) -> str | BinaryIO:
    if isinstance(source, bytes | bytearray):
        return io.BytesIO(source)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():  # libsndfile only says "System error."
            raise FileNotFoundError(str(path))
        if path.is_dir():
            raise IsADirectoryError(str(path))
        return str(path)
    return source


def info(source: AudioSource) -> AudioInfo:
    """Read the header of an audio file (path, bytes or binary file object).

    Raises :class:`~mmkit.errors.MediaError` when the source cannot be opened as audio.
    """
    try:
        meta = sf.info(_open(source))
    except Exception as exc:
        raise MediaError(f"cannot decode {_describe(source)}: {_reason(exc)}") from exc
    return AudioInfo(
        sample_rate=int(meta.samplerate),
        channels=int(meta.channels),
        frames=int(meta.frames),
        duration=float(meta.frames) / float(meta.samplerate),
        format=str(meta.format),
        subtype=str(meta.subtype),
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    text = str(exc).strip().splitlines()
    reason = text[-1] if text else type(exc).__name__
    # libsndfile messages repeat the file name ("Error opening 'x.wav': Format not recognised.")
    if reason.startswith("Error opening"):
        reason = reason.split(": ", 1)[-1]
    return reason.rstrip(".")


def load_audio(source: AudioSource, sample_rate: int, *, mono: bool = True) -> torch.Tensor:
    """Decode audio to float32 in [-1, 1] at ``sample_rate``.

    Args:
        source: a path, the encoded bytes, or a binary file object.
        sample_rate: the rate of the returned waveform; the file is resampled when it differs.
        mono: average the channels into one.

    Returns:
        ``[T]`` when ``mono`` else ``[C, T]``.

    Raises:
        MediaError: ``cannot decode <path>: <reason>`` for missing, unreadable or empty files.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate ({sample_rate}) must be > 0")
    name = _describe(source)
    try:
        data, file_rate = sf.read(_open(source), dtype="float32", always_2d=True)
    except Exception as exc:
        raise MediaError(f"cannot decode {name}: {_reason(exc)}") from exc
    if data.shape[0] == 0:
        raise MediaError(f"cannot decode {name}: no audio frames")
    wave = torch.from_numpy(data.T.copy())  # [C, T]
    if mono:
        wave = wave.mean(dim=0)
    if file_rate != sample_rate:
        wave = AF.resample(wave, int(file_rate), int(sample_rate))
    if not torch.isfinite(wave).all():
        raise MediaError(f"cannot decode {name}: non-finite samples")
    return wave.clamp_(-1.0, 1.0)


def to_int16(wave: torch.Tensor) -> torch.Tensor:
    """Float waveform in [-1, 1] -> int16 PCM (clipped), the compact storage format."""
    return (wave.detach().float() * _INT16_SCALE).round_().clamp_(-32768, 32767).to(torch.int16)


def from_int16(pcm: torch.Tensor) -> torch.Tensor:
    """int16 PCM -> float32 in [-1, 1), the inverse of :func:`to_int16` (as libsndfile scales)."""
    return pcm.to(torch.float32) / _INT16_SCALE


def pad_or_crop(
    wave: torch.Tensor,
    length: int,
    *,
    mode: str = "center",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero-pad or crop the last dimension of ``wave`` to exactly ``length`` samples.

    ``mode="center"`` keeps the middle (or pads both sides equally), ``"start"`` keeps the start
    (or pads at the end), ``"random"`` picks the crop offset or the pad position at random with
    ``generator`` (the global torch RNG when ``None``).
    """
    if length <= 0:
        raise ValueError(f"length ({length}) must be > 0")
    if mode not in _PAD_MODES:
        raise ValueError(f"mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}")
    size = wave.shape[-1]
    if size == length:
        return wave
    slack = abs(size - length)
    if mode == "start":
        offset = 0
    elif mode == "center":
        offset = slack // 2
    else:
        offset = int(torch.randint(0, slack + 1, (1,), generator=generator).item())
    if size > length:
        return wave[..., offset : offset + length]
    return torch.nn.functional.pad(wave, (offset, slack - offset))


def sliding_windows(wave: torch.Tensor, length: int, hop: int) -> list[tuple[int, torch.Tensor]]:
    """Cut ``wave`` (``[..., T]``) into ``(start_sample, window)`` pairs of ``length`` samples.

    Windows start every ``hop`` samples; when the grid does not reach the end, one more window is
    aligned to the end, so the whole clip is covered with real audio. A clip shorter than
    ``length`` gives one window, zero-padded at the end.
    """
    if length <= 0:
        raise ValueError(f"length ({length}) must be > 0")
    if hop <= 0:
        raise ValueError(f"hop ({hop}) must be > 0")
    size = wave.shape[-1]
    if size <= length:
        return [(0, pad_or_crop(wave, length, mode="start"))]
    starts = list(range(0, size - length + 1, hop))
    if starts[-1] + length < size:
        starts.append(size - length)
    return [(s, wave[..., s : s + length]) for s in starts]
