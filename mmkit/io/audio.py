"""Audio decoding with soundfile: load, resample, mono mix-down, int16 storage, pad/crop, windows.

Decoding never goes through ``torchaudio.load`` or torchcodec: soundfile (libsndfile) reads WAV,
FLAC, OGG/Vorbis, Opus and MP3 from paths, bytes and file objects, and
:func:`torchaudio.functional.resample` changes the rate. :func:`stream_audio` and
:func:`iter_windows` give the same samples and windows block by block, so a file hours long is
classified in bounded memory.

Only regular files are opened (a FIFO would block forever), and every failure is one
:class:`~mmkit.errors.MediaError` ``cannot decode <path>: <reason>`` with the real reason;
mpg123's own chatter about a damaged MP3 is kept off stderr (:mod:`mmkit.io.stderr_filter`).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import soundfile as sf
import torch
import torchaudio.functional as AF

from mmkit.errors import MediaError
from mmkit.io.files import file_problem, os_reason, short_path
from mmkit.io.stderr_filter import mpg123_quiet

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"}
)
"""File extensions (lower case, with the dot) treated as audio when a folder is scanned."""

_PAD_MODES = ("center", "random", "start")
_MPEG_SUFFIXES = frozenset({".mp3", ".mp2", ".mpga"})
_LOWPASS_WIDTH, _ROLLOFF = 6, 0.99  # torchaudio.functional.resample's defaults (load_audio's)
BLOCK_SECONDS = 10.0
"""How much of a file :func:`stream_audio` decodes at a time."""
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
        return short_path(source)
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "name", "<stream>"))


def _open(source: AudioSource) -> tuple[str | BinaryIO, bool]:
    """What soundfile opens, and whether it holds MPEG audio (decoded by mpg123, which talks on
    stderr). A path must be a regular file: libsndfile would block on a FIFO and says only
    "System error." for a missing file."""
    if isinstance(source, bytes | bytearray):
        return io.BytesIO(source), _looks_mpeg(bytes(source[:4]))
    if isinstance(source, str | Path):
        problem = file_problem(source)
        if problem is not None:
            raise MediaError.cannot_decode(_describe(source), problem)
        if Path(source).suffix.lower() in _MPEG_SUFFIXES:
            return str(source), True
        try:
            with open(source, "rb") as f:
                return str(source), _looks_mpeg(f.read(4))
        except OSError as exc:
            raise MediaError.cannot_decode(_describe(source), os_reason(exc)) from None
    head = b""
    with contextlib.suppress(Exception):  # a stream that cannot seek back: assume the worst
        position = source.tell()
        head = source.read(4)
        source.seek(position)
    return source, not head or _looks_mpeg(head)


def _looks_mpeg(head: bytes) -> bool:
    """An ID3 tag or an MPEG audio frame sync at the start (what makes libsndfile try mpg123)."""
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] >= 0xE0)


def _quiet(mpeg: bool) -> contextlib.AbstractContextManager[None]:
    return mpg123_quiet() if mpeg else contextlib.nullcontext()


def _fail(source: AudioSource, exc: Exception, mpeg: bool) -> MediaError:
    return MediaError.cannot_decode(_describe(source), _reason(exc, mpeg))


def info(source: AudioSource) -> AudioInfo:
    """Read the header of an audio file (path, bytes or binary file object).

    Raises :class:`~mmkit.errors.MediaError` when the source cannot be opened as audio.
    """
    opened, mpeg = _open(source)
    try:
        with _quiet(mpeg):
            meta = sf.info(opened)
    except Exception as exc:
        raise _fail(source, exc, mpeg) from exc
    return AudioInfo(
        sample_rate=int(meta.samplerate),
        channels=int(meta.channels),
        frames=int(meta.frames),
        duration=float(meta.frames) / float(meta.samplerate),
        format=str(meta.format),
        subtype=str(meta.subtype),
    )


def _reason(exc: Exception, mpeg: bool = False) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return os_reason(exc)
    text = str(exc).strip().splitlines()
    reason = text[-1] if text else type(exc).__name__
    # libsndfile messages repeat the file name ("Error opening 'x.wav': Format not recognised.")
    if reason.startswith("Error opening"):
        reason = reason.split(": ", 1)[-1]
    reason = reason.rstrip(".")
    if reason.startswith("File does not exist or is not a regular file"):
        # libsndfile's words when mpg123 finds no MPEG frame in a file that _open saw is regular
        reason = "no MPEG audio frames found" if mpeg else "Format not recognised"
    elif reason == "Unspecified internal error" and mpeg:
        reason = "corrupt MPEG audio data (the decoder gave up resynchronising)"
    return reason


def load_audio(source: AudioSource, sample_rate: int, *, mono: bool = True) -> torch.Tensor:
    """Decode audio to float32 in [-1, 1] at ``sample_rate``.

    Args:
        source: a path, the encoded bytes, or a binary file object.
        sample_rate: the rate of the returned waveform; the file is resampled when it differs.
        mono: average the channels into one.

    Returns:
        ``[T]`` when ``mono`` else ``[C, T]``.

    Raises:
        MediaError: ``cannot decode <path>: <reason>`` for missing, unreadable or empty files,
            and for paths that are not regular files (a FIFO would block forever).
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate ({sample_rate}) must be > 0")
    name = _describe(source)
    opened, mpeg = _open(source)
    try:
        with _quiet(mpeg):
            data, file_rate = sf.read(opened, dtype="float32", always_2d=True)
    except Exception as exc:
        raise _fail(source, exc, mpeg) from exc
    if data.shape[0] == 0:
        raise MediaError.cannot_decode(name, "no audio frames")
    wave = torch.from_numpy(data.T.copy())  # [C, T]
    if mono:
        wave = wave.mean(dim=0)
    if file_rate != sample_rate:
        wave = AF.resample(wave, int(file_rate), int(sample_rate))
    return _checked(wave, name)


def _checked(wave: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.isfinite(wave).all():
        raise MediaError.cannot_decode(name, "non-finite samples")
    return wave.clamp_(-1.0, 1.0)


def stream_audio(
    source: AudioSource, sample_rate: int, *, block_seconds: float = BLOCK_SECONDS
) -> Iterator[torch.Tensor]:
    """Decode to mono float32 at ``sample_rate`` one block (about ``block_seconds`` of the
    file) at a time, so a file of any length needs the same memory.

    The blocks, concatenated, are :func:`load_audio` ``(source, sample_rate)`` up to float
    rounding: the file is read at its own rate in blocks of a whole number of the resampler's
    input periods, and each block is resampled by :func:`torchaudio.functional.resample` (the
    same kernel) together with enough neighbouring samples on both sides (zeros before the
    start and after the end, as the whole-file call pads) that every output sample sees exactly
    the inputs it sees in the whole-file call; the extra outputs are cut off.

    Raises:
        MediaError: as :func:`load_audio`, when the file is opened or while it is read.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate ({sample_rate}) must be > 0")
    if block_seconds <= 0:
        raise ValueError(f"block_seconds ({block_seconds}) must be > 0")
    name = _describe(source)
    opened, mpeg = _open(source)
    try:
        with _quiet(mpeg):
            handle = sf.SoundFile(opened)
    except Exception as exc:
        raise _fail(source, exc, mpeg) from exc
    with handle:
        rate = int(handle.samplerate)
        g = math.gcd(rate, int(sample_rate))
        o, n = rate // g, int(sample_rate) // g  # o input samples give n output samples

        def read(frames: int) -> torch.Tensor:
            try:
                with _quiet(mpeg):
                    data = handle.read(frames, dtype="float32", always_2d=True)
            except Exception as exc:
                raise _fail(source, exc, mpeg) from exc
            return torch.from_numpy(data.T.copy()).mean(dim=0)

        step = max(1, round(block_seconds * rate) // o) * o
        if o == n:
            total = 0
            while (block := read(step)).numel():
                total += block.numel()
                yield _checked(block, name)
            if not total:
                raise MediaError.cannot_decode(name, "no audio frames")
            return
        width = math.ceil(_LOWPASS_WIDTH * o / (min(o, n) * _ROLLOFF))  # torchaudio's kernel
        context = -(-width // o) * o  # whole input periods on each side of a block
        buf = torch.zeros(context)  # input from period `done` on, `context` samples before it
        done = total = 0
        while True:
            block = read(step)
            total += block.numel()
            end = block.numel() == 0
            if end:
                if not total:
                    raise MediaError.cannot_decode(name, "no audio frames")
                target = -(-n * total // o)  # the whole-file call's output length
                buf = torch.cat([buf, torch.zeros(context + o)])
                periods = -(-target // n) - done
            else:
                buf = torch.cat([buf, block])
                periods = (buf.numel() - 2 * context) // o
            if periods > 0:
                segment = buf[: periods * o + 2 * context]
                out = AF.resample(segment, o, n)[context // o * n : (context // o + periods) * n]
                if end:
                    out = out[: target - done * n]
                done += periods
                buf = buf[periods * o :]
                yield _checked(out, name)
            if end:
                return


def iter_windows(
    blocks: Iterable[torch.Tensor], length: int, hop: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`sliding_windows` of the concatenated ``blocks``, made as the blocks arrive: the
    same ``(start_sample, window)`` pairs, while only the samples the next windows need are
    kept (about ``length`` plus one block)."""
    if length <= 0:
        raise ValueError(f"length ({length}) must be > 0")
    if hop <= 0:
        raise ValueError(f"hop ({hop}) must be > 0")
    buf = torch.zeros(0)
    offset = size = next_start = 0  # buf[0] is sample `offset`; `size` samples seen
    last_start = None
    for block in blocks:
        buf = torch.cat([buf, block])
        size += block.shape[-1]
        while next_start + length <= size:
            at = next_start - offset
            yield next_start, buf[at : at + length]
            last_start, next_start = next_start, next_start + hop
        keep_from = max(offset, min(next_start, size - length))
        buf, offset = buf[keep_from - offset :], keep_from
    if last_start is None:  # no full window: the clip, zero-padded at the end
        yield 0, pad_or_crop(buf, length, mode="start")
    elif last_start + length < size:  # the grid missed the end: one more, aligned to it
        yield size - length, buf[size - length - offset :]


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
