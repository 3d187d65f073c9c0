"""What separates real recordings from TTS clips, as test conditions for the cross-engine protocol.

Each condition takes the held-out engine's utterances (every voice, every digit: the same 250
flite / 240 espeak-ng words as the protocol's test set) and changes one thing a real recording
has and a TTS clip has not; ``home-8k`` combines several, like digits recorded by people at home
on a laptop microphone and kept as trimmed 8 kHz wav (the Free Spoken Digit Dataset's shape).

- ``reference``: the word with 0.05-0.25 s of room tone each side, 16 kHz 16-bit wav, faint
  noise (35-45 dB SNR): the control every other condition is read against.
- ``reverb``: a simulated room (image-source shoebox, pyroomacoustics; 2.5-8 m rooms, RT60
  0.3-0.9 s, the talker 0.7-3 m away), 16 kHz wav.
- ``mic``: a cheap microphone's response (high-pass 100-300 Hz, a presence peak or dip of
  -6..+8 dB at 1.5-5 kHz, a roll-off at 3.5-7 kHz) and pink/brown room noise at 15-30 dB SNR.
- ``phone-mulaw``: the telephone band (300-3400 Hz) in G.711 mu-law 8 kHz wav.
- ``codec-lowrate``: AMR-NB at 4.75-12.2 kbit/s or Opus at 6-10 kbit/s (the bundled ffmpeg),
  decoded back to 8 kHz 16-bit wav, as a phone or messaging app hands it over.
- ``trim-8k``: cut tight to the word (no silence before the onset or after the offset), 8 kHz
  16-bit wav.
- ``tempo``: spoken 0.75-0.9x or 1.15-1.35x as fast (sox tempo; pitch kept).
- ``pitch-vtl``: pitch and formants together moved by 300-700 cents up or down (sox pitch), a
  smaller or larger vocal tract.
- ``level``: a very quiet recording (peak -45..-30 dBFS) or a clipped one (+6..+15 dB over full
  scale, hard-clipped), alternately.
- ``home-8k``: a small room (RT60 0.2-0.5 s), a microphone response, room noise at 20-35 dB SNR,
  trimmed tight to the word, 8 kHz 16-bit wav.

Everything is seeded from (seed, condition, word, voice), and written once under
``<data>/conditions/<engine>/<condition>/`` with a ``manifest.csv`` (``path,label,condition``).
"""

from __future__ import annotations

import csv
import functools
import json
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from scipy.signal import fftconvolve

from benchmarks.cross_engine_data import DIGITS, RATE, engine_voices, speak
from tests.media import speech as tts

CONDITIONS_VERSION = 1
RIR_BANK = 32  # simulated rooms per reverberant condition
TAIL = round(0.15 * RATE)  # a recording stops this long after the word's silence ends
CONDITIONS = (
    "reference", "reverb", "mic", "phone-mulaw", "codec-lowrate", "trim-8k", "tempo",
    "pitch-vtl", "level", "home-8k",
)  # fmt: skip


@dataclass(frozen=True)
class Clip:
    """A condition's output: samples in [-1, 1] at ``rate``, written as ``ext``/``subtype``."""

    wave: torch.Tensor
    rate: int = RATE
    subtype: str = "PCM_16"
    ext: str = "wav"


def _db(rng: np.random.Generator, lo: float, hi: float) -> float:
    return 10.0 ** (float(rng.uniform(lo, hi)) / 20.0)


def _peak(wave: torch.Tensor, peak: float = 0.5) -> torch.Tensor:
    return wave / wave.abs().max().clamp_min(1e-6) * peak


def _noise(n: int, rng: np.random.Generator, exponent: float) -> torch.Tensor:
    """Unit-RMS noise with a 1 / f**exponent power spectrum (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum * freqs ** (-exponent / 2), n=n)
    noise -= noise.mean()
    return torch.from_numpy((noise / max(noise.std(), 1e-9)).astype(np.float32))


def add_noise(wave: torch.Tensor, rng: np.random.Generator, snr_db: Sequence[float],
              exponents: Sequence[float] = (1.0, 2.0)) -> torch.Tensor:  # fmt: skip
    """``wave`` plus coloured noise at an SNR drawn from ``snr_db`` (speech RMS over noise)."""
    exponent = float(exponents[int(rng.integers(len(exponents)))])
    rms = wave.pow(2).mean().sqrt().clamp_min(1e-8)
    noise = _noise(wave.numel(), rng, exponent) * rms * 10.0 ** (-rng.uniform(*snr_db) / 20.0)
    return wave + noise


def with_margins(word: torch.Tensor, rng: np.random.Generator,
                 margin: Sequence[float] = (0.05, 0.25)) -> torch.Tensor:  # fmt: skip
    """The word with a random stretch of silence (filled by later noise) on each side."""
    before, after = (round(float(rng.uniform(*margin)) * RATE) for _ in range(2))
    return torch.nn.functional.pad(word, (before, after))


def word_span(wave: torch.Tensor, threshold_db: float = 30.0) -> tuple[int, int]:
    """First and one-past-last sample of the 10 ms frames within ``threshold_db`` of the
    loudest one: where the word is."""
    hop = RATE // 100
    frames = wave[: wave.numel() // hop * hop].reshape(-1, hop).pow(2).mean(-1)
    loud = torch.nonzero(frames >= frames.max() * 10.0 ** (-threshold_db / 10.0)).flatten()
    return int(loud[0]) * hop, (int(loud[-1]) + 1) * hop


def trim_to_word(wave: torch.Tensor, threshold_db: float = 30.0,
                 clean: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Cut ``wave`` to the word, found in ``clean`` (the same recording before its noise) when
    given: a noise floor within ``threshold_db`` of the peak would otherwise keep it all."""
    start, end = word_span(wave if clean is None else clean, threshold_db)
    return wave[start:end]


def room_rir(
    rng: np.random.Generator, rt60: Sequence[float], distance: Sequence[float]
) -> np.ndarray:
    """A shoebox room's impulse response (image-source method, pyroomacoustics), 16 kHz."""
    import pyroomacoustics as pra

    size = np.array([rng.uniform(2.5, 8.0), rng.uniform(2.5, 6.0), rng.uniform(2.3, 3.2)])
    absorption, order = pra.inverse_sabine(float(rng.uniform(*rt60)), size)
    room = pra.ShoeBox(size, fs=RATE, materials=pra.Material(absorption), max_order=min(order, 40))
    mic = size * rng.uniform(0.2, 0.8, 3)
    direction = rng.standard_normal(3)
    direction[2] *= 0.2
    direction /= np.linalg.norm(direction)
    source = np.clip(mic + direction * rng.uniform(*distance), 0.3, size - 0.3)
    room.add_source(source.tolist())
    room.add_microphone(mic.tolist())
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    return rir[int(np.argmax(np.abs(rir))) :]  # from the direct path: no added delay


@functools.lru_cache(maxsize=8)
def rir_bank(seed: int, rt60: tuple[float, float], distance: tuple[float, float],
             size: int = RIR_BANK) -> tuple[np.ndarray, ...]:  # fmt: skip
    """``size`` rooms for one condition (simulating one per clip would take minutes)."""
    rng = np.random.default_rng([seed, 77, round(rt60[1] * 100), round(distance[1] * 100)])
    return tuple(room_rir(rng, rt60, distance) for _ in range(size))


def reverberate(wave: torch.Tensor, rng: np.random.Generator, rt60: tuple[float, float],
                distance: tuple[float, float], seed: int) -> torch.Tensor:  # fmt: skip
    """``wave`` in one of the condition's simulated rooms (picked by ``rng``)."""
    bank = rir_bank(seed, rt60, distance)
    return convolve(wave, bank[int(rng.integers(len(bank)))])


def convolve(wave: torch.Tensor, rir: np.ndarray) -> torch.Tensor:
    """``wave`` through the room ``rir``, cut :data:`TAIL` after ``wave``'s end."""
    wet = fftconvolve(wave.numpy().astype(np.float64), rir)[: wave.numel() + TAIL]
    return torch.from_numpy(wet.astype(np.float32))


def mic_response(wave: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A cheap microphone: high-pass, a presence peak or dip, a high roll-off."""
    x = AF.highpass_biquad(wave[None], RATE, float(rng.uniform(100, 300)))
    gain = float(rng.uniform(-6.0, 8.0))
    x = AF.equalizer_biquad(x, RATE, float(rng.uniform(1500, 5000)), gain, Q=1.0)
    x = AF.lowpass_biquad(x, RATE, float(rng.uniform(3500, 7000)))
    return x[0]


def resample(wave: torch.Tensor, rate: int) -> torch.Tensor:
    return AF.resample(wave, RATE, rate).clamp(-1.0, 1.0)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr[-300:]}")


def ffmpeg_codec(wave: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """AMR-NB (4.75-12.2 kbit/s) or Opus (6-10 kbit/s) at 8 kHz and back, via the bundled
    ffmpeg; the decoded 8 kHz samples."""
    import imageio_ffmpeg

    if rng.uniform() < 0.5:
        codec = ["-c:a", "libopencore_amrnb", "-b:a", str(rng.choice([4750, 5900, 7400, 12200]))]
        ext = "amr"
    else:
        codec = ["-c:a", "libopus", "-b:a", f"{int(rng.integers(6, 11))}k", "-application", "voip"]
        ext = "ogg"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory(prefix="mmkit-codec-") as tmp:
        src, enc, dst = (Path(tmp) / n for n in ("in.wav", f"enc.{ext}", "out.wav"))
        sf.write(src, resample(wave, 8000).numpy(), 8000, subtype="PCM_16")
        _run([ffmpeg, "-v", "error", "-y", "-i", str(src), "-ac", "1", "-ar", "8000", *codec,
              str(enc)])  # fmt: skip
        _run([ffmpeg, "-v", "error", "-y", "-i", str(enc), "-ar", "8000", "-ac", "1", str(dst)])
        data, _ = sf.read(dst, dtype="float32")
    return torch.from_numpy(data)


def sox_effect(wave: torch.Tensor, *effect: str) -> torch.Tensor:
    with tempfile.TemporaryDirectory(prefix="mmkit-sox-") as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, wave.numpy(), RATE, subtype="FLOAT")
        _run([tts.tool_path("sox"), str(src), str(dst), *effect])
        data, _ = sf.read(dst, dtype="float32")
    return torch.from_numpy(data)


def _faint(wave: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    return add_noise(wave, rng, (35.0, 45.0))


def _either(rng: np.random.Generator, low: Sequence[float], high: Sequence[float]) -> float:
    return float(rng.uniform(*(low if rng.uniform() < 0.5 else high)))


def make_clip(condition: str, word: torch.Tensor, rng: np.random.Generator, seed: int = 0) -> Clip:
    """One recording of ``word`` (16 kHz, trimmed TTS output) under ``condition``; ``seed``
    picks the bank of simulated rooms."""
    word = _peak(word)
    if condition == "reference":
        return Clip(_peak(_faint(with_margins(word, rng), rng)))
    if condition == "reverb":
        wet = reverberate(with_margins(word, rng), rng, (0.3, 0.9), (0.7, 3.0), seed)
        return Clip(_peak(_faint(wet, rng)))
    if condition == "mic":
        return Clip(_peak(add_noise(mic_response(with_margins(word, rng), rng), rng, (15, 30))))
    if condition == "phone-mulaw":
        x = AF.highpass_biquad(with_margins(word, rng)[None], RATE, 300.0)
        x = AF.lowpass_biquad(_faint(x[0], rng)[None], RATE, 3400.0)[0]
        return Clip(resample(_peak(x), 8000), 8000, "ULAW")
    if condition == "codec-lowrate":
        return Clip(_peak(ffmpeg_codec(_faint(with_margins(word, rng), rng), rng)), 8000)
    if condition == "trim-8k":
        return Clip(resample(_peak(trim_to_word(_faint(word, rng))), 8000), 8000)
    if condition == "tempo":
        factor = _either(rng, (0.75, 0.9), (1.15, 1.35))
        return Clip(_peak(_faint(with_margins(sox_effect(word, "tempo", "-s", f"{factor:.3f}"),
                                              rng), rng)))  # fmt: skip
    if condition == "pitch-vtl":
        cents = round(_either(rng, (-700, -300), (300, 700)))
        return Clip(_peak(_faint(with_margins(sox_effect(word, "pitch", str(cents)), rng), rng)))
    if condition == "level":
        x = _faint(with_margins(word, rng), rng)
        if rng.uniform() < 0.5:
            return Clip(_peak(x, 10.0 ** (float(rng.uniform(-45, -30)) / 20.0)))
        return Clip((_peak(x, 1.0) * _db(rng, 6.0, 15.0)).clamp(-1.0, 1.0))
    if condition == "home-8k":
        wet = reverberate(with_margins(word, rng), rng, (0.2, 0.5), (0.3, 1.2), seed)
        mic = mic_response(wet, rng)
        x = trim_to_word(add_noise(mic, rng, (20.0, 35.0)), 35.0, clean=mic)
        return Clip(resample(_peak(x), 8000), 8000)
    raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")


@dataclass(frozen=True)
class ConditionSpec:
    """What :func:`ensure_conditions` writes; any change rewrites the cached folders."""

    conditions: tuple[str, ...] = CONDITIONS
    voices: int | None = None
    words: tuple[str, ...] = DIGITS
    seed: int = 0
    version: int = CONDITIONS_VERSION


@dataclass(frozen=True)
class ConditionSet:
    """One condition's test set for one engine: every file listed in ``manifest``."""

    name: str
    manifest: Path
    files: int


def _write_condition(root: Path, condition: str, words: dict[tuple[int, int], torch.Tensor],
                     ids: Sequence[str], spec: ConditionSpec) -> int:  # fmt: skip
    rows = []
    for (w, v), word in sorted(words.items()):
        rng = np.random.default_rng([spec.seed, zlib.crc32(condition.encode()), w, v])
        clip = make_clip(condition, word, rng, spec.seed)
        path = root / spec.words[w] / f"{ids[v]}.{clip.ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, clip.wave.clamp(-1.0, 1.0).numpy(), clip.rate, subtype=clip.subtype)
        rows.append([str(path.relative_to(root)), spec.words[w], condition])
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "condition"])
        writer.writerows(rows)
    return len(rows)


def ensure_conditions(
    data_dir: str | Path, engine: str, spec: ConditionSpec = ConditionSpec(),
    progress: Callable[[str], None] | None = None,
) -> list[ConditionSet]:  # fmt: skip
    """Write (or reuse, when ``conditions.json`` matches ``spec``) ``engine``'s condition sets
    under ``data_dir/conditions/<engine>/``."""
    root = Path(data_dir).expanduser() / "conditions" / engine
    meta_path = root / "conditions.json"
    wanted = json.loads(json.dumps(asdict(spec)))
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("spec") == wanted:
            return [ConditionSet(c, root / c / "manifest.csv", meta["counts"][c])
                    for c in spec.conditions]  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)
    voices = engine_voices(engine, spec.voices)
    words = {(w, v): speak(word, voice) for w, word in enumerate(spec.words)
             for v, voice in enumerate(voices)}  # fmt: skip
    counts = {}
    for condition in spec.conditions:
        if progress:
            progress(f"writing {engine} condition {condition}")
        counts[condition] = _write_condition(
            root / condition, condition, words, [v.id for v in voices], spec
        )
    meta_path.write_text(json.dumps({"spec": wanted, "counts": counts}, indent=2))
    return [ConditionSet(c, root / c / "manifest.csv", counts[c]) for c in spec.conditions]
