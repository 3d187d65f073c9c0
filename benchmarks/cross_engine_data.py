"""Cross-engine spoken-digit data: train on one speech engine, test on the other.

Training sets are what a user would collect: ``<root>/<digit>/<voice>_<take>.wav``, 1 s, 16 kHz,
16-bit, spoken by many voices of ONE engine (espeak-ng or flite). Test sets are the OTHER engine's
voices as recordings arrive in the wild: 0.4-0.95 s long, random gain, faint white noise, and
encoded in formats the training set never had (mp3 44.1 kHz stereo, flac 24-bit 48 kHz, ogg
22.05 kHz, wav u8 8 kHz, wav 16 kHz), listed in ``<root>/manifest.csv`` (no split column).
Everything is seeded, so the same arguments write the same files.

The speech itself comes from ``tests/media/speech.py``; this module is the one place the benchmarks
import it from.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from tests.media import speech as tts

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ENGINES = ("espeak", "flite")
RATE = 16000
TRAIN_SECONDS = 1.0
TEST_SECONDS = (0.4, 0.95)
TEST_GAIN_DB = (-20.0, 5.0)  # relative to a 0.5 peak
TEST_SNR_DB = (20.0, 35.0)  # white noise, "faint"
DATA_VERSION = 2

_ESPEAK_BASES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
    "en-029",
)
_ESPEAK_VARIANTS = (
    "m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "m6", "m7", "klatt", "klatt2", "croak",
)  # fmt: skip
_ESPEAK_PITCH = (None, 35, 60, 45, 70, 30, 55, 75, 40, 65, 50)
_ESPEAK_SPEED = (None, 150, 170, 140, 185, 160, 130, 175, 145)
# flite: (voice, F0 target in Hz or None, rate in percent or None, sox pitch shift in cents).
# rms ignores int_f0_target_mean, so its pitch varies through sox instead.
_FLITE = (
    ("kal", None, None, 0),
    ("kal16", None, None, 0),
    ("awb", None, None, 0),
    ("rms", None, None, 0),
    ("slt", None, None, 0),
    ("kal", 130, 90, 0),
    ("kal16", 85, 110, 0),
    ("awb", 140, 95, 0),
    ("rms", None, 90, 300),
    ("slt", 240, 105, 0),
    ("kal", None, 115, -300),
    ("kal16", 120, 85, 0),
    ("awb", 90, 110, 0),
    ("rms", None, 110, -400),
    ("slt", 160, 90, 0),
    ("kal", 100, 100, 500),
    ("kal16", None, 95, -200),
    ("awb", None, 85, 400),
    ("rms", None, 100, 700),
    ("slt", 200, 120, -300),
    ("kal", 150, 105, 0),
    ("kal16", 95, 100, 300),
    ("awb", 110, 120, 0),
    ("rms", None, 120, 200),
    ("slt", 180, 100, 400),
)


@dataclass(frozen=True)
class BenchVoice:
    """An engine voice plus an optional sox pitch shift applied after synthesis."""

    voice: tts.Voice
    shift_cents: int = 0

    @property
    def id(self) -> str:
        return self.voice.id + (f"-x{self.shift_cents:+d}" if self.shift_cents else "")


@dataclass(frozen=True)
class TestFormat:
    """How one test clip is encoded."""

    name: str
    ext: str
    sample_rate: int
    subtype: str | None
    stereo: bool = False


TEST_FORMATS = (
    TestFormat("mp3-44k-stereo", "mp3", 44100, None, stereo=True),
    TestFormat("flac-24bit-48k", "flac", 48000, "PCM_24"),
    TestFormat("ogg-22k", "ogg", 22050, None),
    TestFormat("wav-u8-8k", "wav", 8000, "PCM_U8"),
    TestFormat("wav-16k", "wav", 16000, "PCM_16"),
)


def engine_voices(engine: str, count: int | None = None) -> list[BenchVoice]:
    """A fixed, varied list of voices of one engine (24 espeak-ng, 25 flite), first ``count``."""
    if engine == "espeak":
        voices = [
            BenchVoice(
                tts.Voice(
                    "espeak",
                    f"{_ESPEAK_BASES[i % len(_ESPEAK_BASES)]}+"
                    f"{_ESPEAK_VARIANTS[i % len(_ESPEAK_VARIANTS)]}",
                    pitch=_ESPEAK_PITCH[i % len(_ESPEAK_PITCH)],
                    speed=_ESPEAK_SPEED[i % len(_ESPEAK_SPEED)],
                )
            )
            for i in range(24)
        ]
    elif engine == "flite":
        voices = [
            BenchVoice(tts.Voice("flite", name, pitch=pitch, speed=speed), cents)
            for name, pitch, speed, cents in _FLITE
        ]
    else:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return voices[:count] if count else voices


def other_engine(engine: str) -> str:
    return ENGINES[1 - ENGINES.index(engine)]


def _sox_pitch(wave: torch.Tensor, cents: int) -> torch.Tensor:
    with tempfile.TemporaryDirectory(prefix="mmkit-bench-") as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, wave.numpy(), RATE, subtype="FLOAT")
        cmd = [tts.tool_path("sox"), str(src), str(dst), "pitch", str(cents)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise tts.SpeechToolError(f"sox failed ({proc.returncode}): {proc.stderr.strip()}")
        data, _ = sf.read(dst, dtype="float32")
    return torch.from_numpy(data).clamp_(-1.0, 1.0)


def speak(word: str, voice: BenchVoice, take: int = 0) -> torch.Tensor:
    """``word`` spoken by ``voice`` (take ``n``: another rate and intonation), 16 kHz mono."""
    text = word + ("", "!", "?")[take % 3]
    wave = tts.render(text, voice.voice.take(take), RATE)
    return _sox_pitch(wave, voice.shift_cents) if voice.shift_cents else wave


def _engine_seed(voice: BenchVoice) -> int:
    return ENGINES.index(voice.voice.engine)


def _place(wave: torch.Tensor, length: int, rng: np.random.Generator) -> torch.Tensor:
    """Crop the middle when longer than ``length``, else zero-pad at a random offset."""
    if wave.numel() >= length:
        start = (wave.numel() - length) // 2
        return wave[start : start + length]
    offset = int(rng.integers(0, length - wave.numel() + 1))
    return torch.nn.functional.pad(wave, (offset, length - wave.numel() - offset))


def training_clip(wave: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A 1 s training clip: the word at a random place in silence."""
    return _place(wave, round(TRAIN_SECONDS * RATE), rng)


def recording_clip(wave: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A 0.4-0.95 s test clip (long enough for the whole word when it fits in 0.95 s), peak 0.5
    times a random gain, plus faint white noise."""
    lo, hi = TEST_SECONDS
    seconds = min(hi, max(float(rng.uniform(lo, hi)), wave.numel() / RATE))
    clip = _place(wave, round(seconds * RATE), rng)
    clip = clip / clip.abs().max().clamp_min(1e-6) * 0.5
    clip = clip * 10.0 ** (float(rng.uniform(*TEST_GAIN_DB)) / 20.0)
    snr = float(rng.uniform(*TEST_SNR_DB))
    rms = clip.pow(2).mean().sqrt().item()
    noise = torch.from_numpy(rng.standard_normal(clip.numel()).astype(np.float32))
    return (clip + noise * rms * 10.0 ** (-snr / 20.0)).clamp(-1.0, 1.0)


def write_train_set(
    root: str | Path,
    voices: Sequence[BenchVoice],
    *,
    words: Sequence[str] = DIGITS,
    takes: int = 2,
    seed: int = 0,
) -> list[Path]:
    """``root/<word>/<voice id>_<take>.wav``: 1 s, 16 kHz, 16-bit; a file per word, voice, take."""
    root = Path(root)
    paths = []
    for w, word in enumerate(words):
        for v, voice in enumerate(voices):
            for take in range(takes):
                rng = np.random.default_rng([seed, w, v, take, _engine_seed(voice)])
                path = root / word / f"{voice.id}_{take}.wav"
                tts.write_audio(path, training_clip(speak(word, voice, take), rng), RATE)
                paths.append(path)
    return paths


def write_test_set(
    root: str | Path,
    voices: Sequence[BenchVoice],
    *,
    words: Sequence[str] = DIGITS,
    seed: int = 0,
) -> list[Path]:
    """``root/<word>/<voice id>.<ext>`` in the :data:`TEST_FORMATS` (cycled), plus
    ``root/manifest.csv`` (``path,label,format``: no split, so ``eval`` scores every row)."""
    root = Path(root)
    rows, paths = [], []
    for w, word in enumerate(words):
        for v, voice in enumerate(voices):
            rng = np.random.default_rng([seed, 1000 + w, v, _engine_seed(voice)])
            fmt = TEST_FORMATS[(w + v) % len(TEST_FORMATS)]
            clip = recording_clip(speak(word, voice), rng)
            if fmt.sample_rate != RATE:
                clip = AF.resample(clip, RATE, fmt.sample_rate).clamp(-1.0, 1.0)
            path = root / word / f"{voice.id}.{fmt.ext}"
            tts.write_audio(path, clip, fmt.sample_rate, fmt.subtype, stereo=fmt.stereo)
            paths.append(path)
            rows.append([str(path.relative_to(root)), word, fmt.name])
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "format"])
        writer.writerows(rows)
    return paths


@dataclass(frozen=True)
class DataSpec:
    """What :func:`ensure_data` generates; any change regenerates the cached folder."""

    voices: int | None = None  # per engine; None: all of :func:`engine_voices`
    takes: int = 2
    words: tuple[str, ...] = DIGITS
    seed: int = 0
    version: int = DATA_VERSION


@dataclass(frozen=True)
class EngineData:
    """One engine's training folder and test set (test files listed in ``test_manifest``)."""

    engine: str
    train_dir: Path
    train_files: int
    test_dir: Path
    test_manifest: Path
    test_files: int
    # extra test sets scored beside the main one: (name, manifest, files), e.g. the recording
    # conditions of ``real_conditions.py``; empty unless the protocol asks for them
    conditions: tuple[tuple[str, Path, int], ...] = ()


def ensure_data(data_dir: str | Path, spec: DataSpec = DataSpec()) -> dict[str, EngineData]:
    """Generate (or reuse, when ``data.json`` matches ``spec``) both engines' sets under
    ``data_dir/<engine>/{train,test}``."""
    data_dir = Path(data_dir).expanduser()
    meta_path = data_dir / "data.json"
    wanted = {"spec": _spec_dict(spec)}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("spec") == wanted["spec"]:
            return {e: _engine_data(data_dir, e, meta["counts"][e]) for e in ENGINES}
    if data_dir.exists():
        for engine in ENGINES:
            shutil.rmtree(data_dir / engine, ignore_errors=True)
        meta_path.unlink(missing_ok=True)
    counts = {}
    for engine in ENGINES:
        voices = engine_voices(engine, spec.voices)
        train = write_train_set(
            data_dir / engine / "train", voices, words=spec.words, takes=spec.takes, seed=spec.seed
        )
        test = write_test_set(data_dir / engine / "test", voices, words=spec.words, seed=spec.seed)
        counts[engine] = {"train": len(train), "test": len(test)}
    data_dir.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(dict(wanted, counts=counts), indent=2))
    return {e: _engine_data(data_dir, e, counts[e]) for e in ENGINES}


def _spec_dict(spec: DataSpec) -> dict:
    return json.loads(json.dumps(asdict(spec)))


def _engine_data(data_dir: Path, engine: str, counts: dict[str, int]) -> EngineData:
    return EngineData(
        engine,
        data_dir / engine / "train",
        counts["train"],
        data_dir / engine / "test",
        data_dir / engine / "test" / "manifest.csv",
        counts["test"],
    )


def tiny_spec(seed: int = 0) -> DataSpec:
    """Two voices, two words, one take: for testing the generator itself."""
    return replace(DataSpec(), voices=2, takes=1, words=DIGITS[:2], seed=seed)


def clip_seconds(path: str | Path) -> float:
    """Length of an audio file in seconds, from its header."""
    info = sf.info(str(path))
    return info.frames / info.samplerate if info.samplerate else math.nan
