"""Full-size data sets in the real layouts, made on this machine: what ``mmkit bench --scale``
grows prepare, an epoch, eval and infer on (also ``benchmarks/scale_data.py``).

Size, layout and codecs are the point, not the content (tones, noise, drawn scenes):

- ``speech_commands``: Speech Commands v0.02 as the archive unpacks, 105,829 one-second 16 kHz
  16-bit mono WAVs in 35 word folders at the real per-word counts, named
  ``<speaker>_nohash_<n>.wav`` (2,618 speakers, 8 hex digits), ``validation_list.txt`` and
  ``testing_list.txt`` by the dataset's own speaker hash (10% / 10%), and ``_background_noise_/``
  with six longer WAVs. Each word is a tone of its own pitch, bursting once, in noise.
- ``ucf101``: a quarter of UCF101 (3,330 clips) in its layout: ``UCF-101/<Class>/
  v_<Class>_gNN_cNN.avi`` (XVID MPEG-4 part 2 in AVI, 320x240, 25 fps, 4-10 s) and
  ``ucfTrainTestlist/`` with ``classInd.txt``, ``trainlist0K.txt`` / ``testlist0K.txt`` (CRLF
  lines; fold K tests groups 7K-6..7K of 25), for the 101 real class names. HandstandPushups
  keeps the real spelling quirk (``HandStandPushups`` in folder and file names). Each class is a
  shape, colour and direction; each clip that shape moving over a blocky background.
- ``coco``: COCO-2017-style captions, ``annotations/captions_{train,val}2017.json`` (info,
  licenses, images, annotations) with 20,000 train and 1,000 val JPEGs (drawn scenes, 213-320 px
  sides) in ``train2017/`` / ``val2017/`` named ``<12-digit id>.jpg``, five captions each.

``fraction`` scales every count (at least one item per word, 8 clips, 8 + 4 images). The same
kind, fraction and seed write the same bytes whatever the number of workers (work is seeded per
item or fixed-size chunk). A finished set holds :data:`MARKER` with its parameters: asking again
returns at once; it is written to ``<out>.partial`` and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mmkit.cache import cache_dir
from mmkit.errors import UserInputError
from mmkit.pipelines.bench.scale_jobs import allocate, chunks, map_jobs, scaled
from mmkit.pipelines.bench.scale_scenes import coco, ucf

VERSION = 1
MARKER = ".mmkit-scale.json"

SPEECH_WORDS = {  # files per word in v0.02
    "backward": 1664, "bed": 2014, "bird": 2064, "cat": 2031, "dog": 2128, "down": 3917,
    "eight": 3787, "five": 4052, "follow": 1579, "forward": 1557, "four": 3728, "go": 3880,
    "happy": 2054, "house": 2113, "learn": 1575, "left": 3801, "marvin": 2100, "nine": 3934,
    "no": 3941, "off": 3745, "on": 3845, "one": 3890, "right": 3778, "seven": 3998,
    "sheila": 2022, "six": 3860, "stop": 3872, "three": 3727, "tree": 1759, "two": 3880,
    "up": 3723, "visual": 1592, "wow": 2123, "yes": 4044, "zero": 4052,
}  # fmt: skip
SPEECH_SPEAKERS, MIN_SPEAKERS, RATE = 2618, 50, 16000
NOISE_SECONDS = {"doing_the_dishes": 95, "dude_miaowing": 62, "exercise_bike": 61,
                 "pink_noise": 60, "running_tap": 61, "white_noise": 60}  # fmt: skip
KINDS = ("speech_commands", "ucf101", "coco")
SPEECH_CHUNK = 256


@dataclass(frozen=True)
class ScaleData:
    """A generated data set: where it is, what made it, how many files and how long it took
    (the first time; ``cached`` when it was already there)."""

    kind: str
    path: Path
    params: dict[str, Any]
    files: int
    seconds: float
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        rate = self.files / self.seconds if self.seconds > 0 else None
        return {
            "kind": self.kind,
            "path": str(self.path),
            "params": self.params,
            "files": self.files,
            "seconds": round(self.seconds, 3),
            "files_per_second": round(rate, 1) if rate else None,
            "cached": self.cached,
        }


def parse_fraction(value: str | float | Fraction) -> Fraction:
    """``"1/64"``, ``0.25`` or ``1`` as a :class:`~fractions.Fraction` in (0, 1]."""
    try:
        f = Fraction(str(value)).limit_denominator(1 << 20)
    except (ValueError, ZeroDivisionError):
        raise UserInputError(f"fraction must look like 1/64 or 0.25, got {value!r}") from None
    if not 0 < f <= 1:
        raise UserInputError(f"fraction must be in (0, 1], got {value}")
    return f


def default_dir(kind: str, fraction: Fraction, seed: int) -> Path:
    """``$MMKIT_CACHE/scale/<kind>-<n>-<d>-s<seed>``."""
    tag = f"{fraction.numerator}-{fraction.denominator}"
    return cache_dir() / "scale" / f"{kind}-{tag}-s{seed}"


def generate(
    kind: str,
    fraction: str | float | Fraction = 1,
    out: str | Path | None = None,
    *,
    seed: int = 0,
    workers: int = 1,
) -> ScaleData:
    """The data set ``kind`` at ``fraction`` of full size in ``out`` (default
    :func:`default_dir`), made with ``workers`` processes unless it is there already."""
    if kind not in MAKERS:
        raise UserInputError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    f = parse_fraction(fraction)
    root = Path(out) if out else default_dir(kind, f, seed)
    params = {"kind": kind, "fraction": str(f), "seed": int(seed), "version": VERSION}
    marker = root / MARKER
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("params") != params:
            raise UserInputError(f"{root} holds data made with {done.get('params')}, not {params}")
        return ScaleData(kind, root, params, done["files"], done["seconds"], cached=True)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserInputError(f"{root} exists and is not a generated data set; pick another --out")
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    files = MAKERS[kind](tmp, f, int(seed), max(1, int(workers)))
    seconds = time.perf_counter() - start
    (tmp / MARKER).write_text(json.dumps({"params": params, "files": files, "seconds": seconds}))
    if root.exists():
        root.rmdir()
    tmp.rename(root)
    return ScaleData(kind, root, params, files, seconds, cached=False)


# -- Speech Commands ----------------------------------------------------------------------------
def speech_split(name: str) -> str:
    """The dataset's own ``which_set``: ``validation`` / ``testing`` / ``training`` by the SHA-1
    of the speaker (the part before ``_nohash_``), 10% / 10% / the rest."""
    speaker = Path(name).name.split("_nohash_")[0]
    top = 2**27 - 1
    percent = (int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % (top + 1)) * (100.0 / top)
    return "validation" if percent < 10 else "testing" if percent < 20 else "training"


def _speech(root: Path, fraction: Fraction, seed: int, workers: int) -> int:
    rng = np.random.default_rng([seed, 1])
    speakers: list[str] = []
    n_speakers = scaled(SPEECH_SPEAKERS, fraction, MIN_SPEAKERS)
    while len(speakers) < n_speakers:
        code = f"{int(rng.integers(0, 2**32)):08x}"
        if code not in speakers:
            speakers.append(code)
    weight = rng.lognormal(0.0, 1.0, n_speakers)  # some speakers record far more than others
    items: list[tuple[int, str]] = []
    for w, (word, count) in enumerate(allocate(SPEECH_WORDS, fraction).items()):
        (root / word).mkdir()
        taken: Counter[int] = Counter()
        for s in rng.choice(n_speakers, size=count, p=weight / weight.sum()).tolist():
            items.append((w, f"{word}/{speakers[s]}_nohash_{taken[s]}.wav"))
            taken[s] += 1
    for split, listing in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
        names = sorted(name for _, name in items if speech_split(name) == split)
        (root / listing).write_text("".join(f"{n}\n" for n in names))
    noise = root / "_background_noise_"
    noise.mkdir()
    (noise / "README.md").write_text("Longer clips of noise, generated by mmkit.\n")
    for k, (name, seconds) in enumerate(NOISE_SECONDS.items()):
        noise_rng = np.random.default_rng([seed, 4, k])
        length = RATE * max(2, round(seconds * fraction))
        wave = noise_rng.standard_normal(length, dtype=np.float32) * 0.1
        _write_wav(noise / f"{name}.wav", wave)
    jobs = [(str(root), chunk, seed, k) for k, chunk in chunks(items, SPEECH_CHUNK)]
    return len(NOISE_SECONDS) + map_jobs(_speech_chunk, jobs, workers)


def _write_wav(path: Path, wave: np.ndarray) -> None:
    import soundfile as sf

    sf.write(path, (np.clip(wave, -1, 1) * 32767).astype(np.int16), RATE, subtype="PCM_16")


def _speech_chunk(root: str, items: list[tuple[int, str]], seed: int, chunk: int) -> int:
    """Write one chunk of word clips: 1 s each, word ``w`` a tone at its own pitch bursting
    once, in noise."""
    rng = np.random.default_rng([seed, 1, chunk])
    words = np.array([w for w, _ in items])[:, None]
    t = (np.arange(RATE, dtype=np.float32) / RATE)[None]
    f0 = (150.0 * 2 ** (words / 12) * rng.uniform(0.95, 1.05, words.shape)).astype(np.float32)
    phase = rng.uniform(0, 6.3, words.shape).astype(np.float32)
    wave = np.sin(2 * np.pi * f0 * t + phase) + 0.4 * np.sin(4 * np.pi * f0 * t)
    centre = rng.uniform(0.3, 0.7, words.shape).astype(np.float32)
    width = rng.uniform(0.08, 0.2, words.shape).astype(np.float32)
    gain = rng.uniform(0.2, 0.6, words.shape).astype(np.float32)
    wave *= gain * np.exp(-(((t - centre) / width) ** 2))
    wave += rng.standard_normal(wave.shape, dtype=np.float32) * 0.01
    for row, (_, name) in zip(wave, items, strict=True):
        _write_wav(Path(root, name), row)
    return len(items)


MAKERS: dict[str, Callable[[Path, Fraction, int, int], int]] = {
    "speech_commands": _speech,
    "ucf101": ucf,
    "coco": coco,
}
