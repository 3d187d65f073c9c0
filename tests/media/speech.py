"""Real speech made on this machine with espeak-ng and flite, for tests and the demo data.

A :class:`Voice` names an engine voice plus pitch and speed; :func:`default_voices` lists a varied
set across both engines. :func:`synthesize` speaks a text into an audio file, :func:`make_word_set`
writes a folder-per-class spoken-word set, and :func:`split_voices` holds whole speakers out of
training. The writers for the other source layouts live in :mod:`tests.media.speech_layouts`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

Engine = Literal["espeak", "flite"]

_EXECUTABLES = {"espeak": "espeak-ng", "flite": "flite", "sox": "sox"}
_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
# Take n of a word varies the speaking rate and the punctuation (which changes the intonation).
_TAKE_SPEED = (1.0, 0.88, 1.12, 0.94, 1.06)
_TAKE_MARK = ("", "!", "?", ".")


class SpeechToolError(RuntimeError):
    """An external tool (espeak-ng, flite, sox, ffmpeg) is missing or failed."""


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    Attributes:
        engine: ``"espeak"`` (espeak-ng) or ``"flite"``.
        name: the engine's voice, e.g. ``"en-gb-x-rp+m3"`` or ``"slt"``.
        pitch: espeak: base pitch 0-99 (``-p``); flite: target mean F0 in Hz. ``None``: default.
        speed: espeak: words per minute (``-s``); flite: percent of the normal rate (100 normal,
            ``duration_stretch = 100 / speed``). ``None``: the engine default.
    """

    engine: Engine
    name: str
    pitch: int | None = None
    speed: int | None = None

    def __post_init__(self) -> None:
        if self.engine not in ("espeak", "flite"):
            raise ValueError(f"engine must be 'espeak' or 'flite', got {self.engine!r}")

    @property
    def id(self) -> str:
        """A stable, file-name-safe id (``[a-z0-9-]``), e.g. ``espeak-en-gb-x-rp-m3-p60-s150``."""
        parts = [self.engine, re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")]
        if self.pitch is not None:
            parts.append(f"p{self.pitch}")
        if self.speed is not None:
            parts.append(f"s{self.speed}")
        return "-".join(parts)

    @property
    def speaker(self) -> str:
        """The underlying speaker: voices differing only in pitch/speed (or rate) share it."""
        base = self.name.removesuffix("16") if self.engine == "flite" else self.name
        return f"{self.engine}-{re.sub(r'[^a-z0-9]+', '-', base.lower()).strip('-')}"

    def take(self, n: int) -> Voice:
        """The voice for take ``n`` of an utterance: the same speaker at a slightly varied rate."""
        factor = _TAKE_SPEED[n % len(_TAKE_SPEED)]
        if factor == 1.0:
            return self
        default = 175 if self.engine == "espeak" else 100
        return replace(self, speed=round((self.speed or default) * factor))


@dataclass(frozen=True)
class SpeechItem:
    """One spoken-word file: where it is, which word, which voice (:attr:`Voice.id`), which take."""

    path: Path
    word: str
    voice: str
    take: int = 0


@dataclass(frozen=True)
class VoiceSplit:
    """Voices for training, validation and test; held-out speakers never appear in training."""

    train: tuple[Voice, ...]
    validation: tuple[Voice, ...]
    test: tuple[Voice, ...]

    def mapping(self) -> dict[str, str]:
        """Voice id -> ``"train"`` | ``"validation"`` | ``"test"``, as the layout writers take."""
        return {
            v.id: split
            for split, voices in (
                ("train", self.train),
                ("validation", self.validation),
                ("test", self.test),
            )
            for v in voices
        }


def default_voices() -> list[Voice]:
    """A varied, fixed list of voices: 13 espeak-ng accents/variants and 7 flite voices."""
    espeak = [
        Voice("espeak", "en-us"),
        Voice("espeak", "en-us+m3", pitch=35, speed=150),
        Voice("espeak", "en-us+f2", pitch=65, speed=170),
        Voice("espeak", "en-gb+m1", pitch=45, speed=160),
        Voice("espeak", "en-gb+f1", pitch=70, speed=150),
        Voice("espeak", "en-gb-scotland+m2", pitch=40, speed=155),
        Voice("espeak", "en-gb-scotland+f3", pitch=60, speed=175),
        Voice("espeak", "en-gb-x-rp+m7", pitch=30, speed=140),
        Voice("espeak", "en-gb-x-rp+f4", pitch=75, speed=160),
        Voice("espeak", "en-us-nyc+m5", pitch=50, speed=185),
        Voice("espeak", "en-029+m4", pitch=55, speed=150),
        Voice("espeak", "en-gb-x-gbclan+m6", pitch=42, speed=165),
        Voice("espeak", "en-gb-x-gbcwmd+f2", pitch=68, speed=145),
    ]
    flite = [
        Voice("flite", "kal"),
        Voice("flite", "kal16", pitch=120, speed=90),
        Voice("flite", "slt"),
        Voice("flite", "slt", pitch=230, speed=110),
        Voice("flite", "awb"),
        Voice("flite", "awb", pitch=95, speed=85),
        Voice("flite", "rms", pitch=120, speed=105),
    ]
    return espeak + flite


def split_voices(
    voices: Sequence[Voice], *, validation_per_engine: int = 1, test_per_engine: int = 1
) -> VoiceSplit:
    """Hold whole speakers out of training, per engine.

    The last ``test_per_engine`` speakers of each engine go to test, the ``validation_per_engine``
    before them to validation. Deterministic in the order of ``voices``; every engine keeps at
    least one training speaker.
    """
    train: list[Voice] = []
    validation: list[Voice] = []
    test: list[Voice] = []
    for engine in dict.fromkeys(v.engine for v in voices):
        speakers = list(dict.fromkeys(v.speaker for v in voices if v.engine == engine))
        held = validation_per_engine + test_per_engine
        if held >= len(speakers):
            raise ValueError(
                f"{engine}: cannot hold out {held} of {len(speakers)} speakers and still train"
            )
        cut = len(speakers) - held
        to_validation = set(speakers[cut : cut + validation_per_engine])
        to_test = set(speakers[cut + validation_per_engine :])
        for v in voices:
            if v.engine != engine:
                continue
            if v.speaker in to_test:
                test.append(v)
            elif v.speaker in to_validation:
                validation.append(v)
            else:
                train.append(v)
    return VoiceSplit(tuple(train), tuple(validation), tuple(test))


def tool_path(tool: str) -> str:
    """The executable of ``"espeak"``, ``"flite"`` or ``"sox"``; a clear error when missing."""
    exe = _EXECUTABLES[tool]
    found = shutil.which(exe)
    if found is None:
        raise SpeechToolError(
            f"{exe} not found on PATH; install it (Debian/Ubuntu: apt-get install {exe})"
        )
    return found


def _run(cmd: list[str], *, stdin: str | None = None) -> None:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SpeechToolError(
            f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip()}"
        )


def _engine_command(text: str, out: Path, voice: Voice) -> tuple[list[str], str | None]:
    if voice.engine == "espeak":
        cmd = [tool_path("espeak"), "-v", voice.name, "-w", str(out)]
        if voice.pitch is not None:
            cmd += ["-p", str(voice.pitch)]
        if voice.speed is not None:
            cmd += ["-s", str(voice.speed)]
        return [*cmd, "--stdin"], text
    cmd = [tool_path("flite"), "-voice", voice.name]
    if voice.pitch is not None:
        cmd += ["--setf", f"int_f0_target_mean={voice.pitch}"]
    if voice.speed is not None:
        cmd += ["--setf", f"duration_stretch={100.0 / voice.speed:.4f}"]
    return [*cmd, "-t", text, "-o", str(out)], None


def trim_silence(
    wave: np.ndarray, sample_rate: int, *, threshold_db: float = -40.0, margin: float = 0.03
) -> np.ndarray:
    """Drop leading/trailing audio whose 10 ms frame energy is ``threshold_db`` below the loudest
    frame, keeping ``margin`` seconds either side. Silence inside the clip is kept."""
    hop = max(1, sample_rate // 100)
    frames = len(wave) // hop
    if frames == 0:
        return wave
    rms = np.sqrt(np.mean(wave[: frames * hop].reshape(frames, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10.0 ** (threshold_db / 20.0))
    if loud.size == 0:
        return wave
    pad = int(margin * sample_rate)
    start = max(0, loud[0] * hop - pad)
    end = min(len(wave), (loud[-1] + 1) * hop + pad)
    return wave[start:end]


def render(text: str, voice: Voice, sample_rate: int = 16000) -> torch.Tensor:
    """Speak ``text`` with ``voice``; float32 mono ``[T]`` at ``sample_rate``, silence trimmed."""
    with tempfile.TemporaryDirectory(prefix="mmkit-tts-") as tmp:
        raw = Path(tmp) / "speech.wav"
        cmd, stdin = _engine_command(text, raw, voice)
        _run(cmd, stdin=stdin)
        data, rate = sf.read(raw, dtype="float32", always_2d=True)
    wave = torch.from_numpy(trim_silence(data.mean(axis=1), rate).copy())
    if rate != sample_rate:
        wave = AF.resample(wave, int(rate), int(sample_rate))
    return wave.clamp_(-1.0, 1.0)


def synthesize(text: str, path: str | Path, voice: Voice, sample_rate: int = 16000) -> Path:
    """Speak ``text`` into ``path`` (format from its extension, see :func:`write_audio`).

    Raises :class:`SpeechToolError` when the engine is missing or fails.
    """
    path = Path(path)
    write_audio(path, render(text, voice, sample_rate), sample_rate)
    return path


def write_audio(
    path: str | Path,
    wave: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str | None = None,
    *,
    stereo: bool = False,
) -> Path:
    """Write ``wave`` (``[T]`` or channels-first ``[C, T]``, float in [-1, 1]) to ``path``.

    The format follows the extension: ``.wav`` (``PCM_U8`` / ``PCM_16`` default / ``PCM_24`` /
    ``FLOAT``), ``.flac``, ``.ogg`` (Vorbis) or ``.mp3`` (libsndfile's LAME, else the ffmpeg of
    imageio-ffmpeg). ``stereo=True`` writes a mono ``wave`` as two identical channels.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(
            f"unsupported audio extension {suffix!r}; use one of {', '.join(_FORMATS)}"
        )
    data = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    data = np.clip(np.atleast_2d(data.astype(np.float32)), -1.0, 1.0).T  # [T, C]
    if stereo and data.shape[1] == 1:
        data = np.repeat(data, 2, axis=1)
    fmt, default_subtype = _FORMATS[suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "MP3" and "MP3" not in sf.available_formats():
        return write_mp3_ffmpeg(path, data, sample_rate)
    sf.write(path, data, sample_rate, subtype=subtype or default_subtype, format=fmt)
    return path


def write_mp3_ffmpeg(path: Path, data: np.ndarray, sample_rate: int) -> Path:
    """Encode ``data`` (``[T, C]`` float) to MP3 with the ffmpeg binary of imageio-ffmpeg."""
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory(prefix="mmkit-mp3-") as tmp:
        pcm = Path(tmp) / "in.wav"
        sf.write(pcm, data, sample_rate, subtype="PCM_16")
        exe = imageio_ffmpeg.get_ffmpeg_exe()
        _run([exe, "-y", "-loglevel", "error", "-i", str(pcm), "-c:a", "libmp3lame", str(path)])
    return path


def make_word_set(
    root: str | Path,
    words: Iterable[str],
    voices: Iterable[Voice],
    *,
    sample_rate: int = 16000,
    ext: str = "wav",
    takes: int = 1,
) -> list[SpeechItem]:
    """Speak every word with every voice into ``root/<word>/<voice id>_<take>.<ext>``.

    Take ``n > 0`` of a word varies the rate and punctuation (:meth:`Voice.take`). Deterministic:
    the same arguments write the same files and return the items in the same order.
    """
    root = Path(root)
    voices = list(voices)
    items = []
    for word in words:
        for voice in voices:
            for n in range(takes):
                text = word + _TAKE_MARK[n % len(_TAKE_MARK)]
                path = root / word / f"{voice.id}_{n}.{ext.lstrip('.')}"
                synthesize(text, path, voice.take(n), sample_rate)
                items.append(SpeechItem(path=path, word=word, voice=voice.id, take=n))
    return items


def synthesize_sequence(
    words: Sequence[str],
    path: str | Path,
    voice: Voice,
    *,
    gap: float = 0.5,
    sample_rate: int = 16000,
) -> list[tuple[float, float, str]]:
    """Speak ``words`` one by one with ``gap`` seconds of silence between them into ``path``.

    Returns ``(start_s, end_s, word)`` for each word, for testing sliding-window inference.
    """
    silence = torch.zeros(int(gap * sample_rate))
    pieces = [silence]
    segments = []
    cursor = silence.numel()
    for word in words:
        spoken = render(word, voice, sample_rate)
        segments.append((cursor / sample_rate, (cursor + spoken.numel()) / sample_rate, word))
        pieces += [spoken, silence]
        cursor += spoken.numel() + silence.numel()
    write_audio(path, torch.cat(pieces), sample_rate)
    return segments
