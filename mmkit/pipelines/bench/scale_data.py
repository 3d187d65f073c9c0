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
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from mmkit.cache import cache_dir
from mmkit.errors import UserInputError

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
UCF_CLASSES = (
    "ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching",
    "BaseballPitch", "Basketball", "BasketballDunk", "BenchPress", "Biking", "Billiards",
    "BlowDryHair", "BlowingCandles", "BodyWeightSquats", "Bowling", "BoxingPunchingBag",
    "BoxingSpeedBag", "BreastStroke", "BrushingTeeth", "CleanAndJerk", "CliffDiving",
    "CricketBowling", "CricketShot", "CuttingInKitchen", "Diving", "Drumming", "Fencing",
    "FieldHockeyPenalty", "FloorGymnastics", "FrisbeeCatch", "FrontCrawl", "GolfSwing", "Haircut",
    "Hammering", "HammerThrow", "HandstandPushups", "HandstandWalking", "HeadMassage", "HighJump",
    "HorseRace", "HorseRiding", "HulaHoop", "IceDancing", "JavelinThrow", "JugglingBalls",
    "JumpingJack", "JumpRope", "Kayaking", "Knitting", "LongJump", "Lunges", "MilitaryParade",
    "Mixing", "MoppingFloor", "Nunchucks", "ParallelBars", "PizzaTossing", "PlayingCello",
    "PlayingDaf", "PlayingDhol", "PlayingFlute", "PlayingGuitar", "PlayingPiano", "PlayingSitar",
    "PlayingTabla", "PlayingViolin", "PoleVault", "PommelHorse", "PullUps", "Punch", "PushUps",
    "Rafting", "RockClimbingIndoor", "RopeClimbing", "Rowing", "SalsaSpin", "ShavingBeard",
    "Shotput", "SkateBoarding", "Skiing", "Skijet", "SkyDiving", "SoccerJuggling",
    "SoccerPenalty", "StillRings", "SumoWrestling", "Surfing", "Swing", "TableTennisShot",
    "TaiChi", "TennisSwing", "ThrowDiscus", "TrampolineJumping", "Typing", "UnevenBars",
    "VolleyballSpiking", "WalkingWithDog", "WallPushups", "WritingOnBoard", "YoYo",
)  # fmt: skip
UCF_ON_DISK = {"HandstandPushups": "HandStandPushups"}  # folder and file names
UCF_CLIPS, UCF_GROUPS, UCF_FPS, UCF_SIZE = 3330, 25, 25, (240, 320)
COCO_TRAIN, COCO_VAL = 20000, 1000
COCO_SIZES = ((320, 240), (240, 320), (320, 213), (300, 300))
SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220),
           "yellow": (230, 210, 40), "white": (245, 245, 245)}  # fmt: skip
PLACES = ("left", "middle", "right")
KINDS = ("speech_commands", "ucf101", "coco")
SPEECH_CHUNK, UCF_CHUNK, COCO_CHUNK = 256, 4, 64


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


def scaled(full: int, fraction: Fraction, minimum: int) -> int:
    return max(minimum, round(full * fraction))


def _map(task: Callable[..., int], jobs: Sequence[tuple], workers: int) -> int:
    """Run ``task(*job)`` for every job (in ``workers`` fresh processes when more than one);
    the sum of what they return."""
    if workers <= 1 or len(jobs) <= 1:
        return sum(task(*job) for job in jobs)
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
        return sum(pool.map(task, *zip(*jobs, strict=True)))


def _chunks(items: list, size: int) -> list[tuple[int, list]]:
    return [(i // size, items[i : i + size]) for i in range(0, len(items), size)]


# -- Speech Commands ----------------------------------------------------------------------------
def speech_split(name: str) -> str:
    """The dataset's own ``which_set``: ``validation`` / ``testing`` / ``training`` by the SHA-1
    of the speaker (the part before ``_nohash_``), 10% / 10% / the rest."""
    speaker = Path(name).name.split("_nohash_")[0]
    top = 2**27 - 1
    percent = (int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % (top + 1)) * (100.0 / top)
    return "validation" if percent < 10 else "testing" if percent < 20 else "training"


def _allocate(counts: dict[str, int], fraction: Fraction) -> dict[str, int]:
    """``counts`` scaled by ``fraction`` (largest remainders, at least 1 each)."""
    exact = {k: v * fraction for k, v in counts.items()}
    out = {k: max(1, int(v)) for k, v in exact.items()}
    short = round(sum(counts.values()) * fraction) - sum(out.values())
    for k in sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True)[: max(0, short)]:
        out[k] += 1
    return out


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
    for w, (word, count) in enumerate(_allocate(SPEECH_WORDS, fraction).items()):
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
    jobs = [(str(root), chunk, seed, k) for k, chunk in _chunks(items, SPEECH_CHUNK)]
    return len(NOISE_SECONDS) + _map(_speech_chunk, jobs, workers)


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


# -- UCF101 -------------------------------------------------------------------------------------
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


def _ucf(root: Path, fraction: Fraction, seed: int, workers: int) -> int:
    n = scaled(UCF_CLIPS, fraction, 8)
    rank = np.random.default_rng([seed, 2]).permutation(len(UCF_CLASSES))  # who gets extras
    clips = []  # (class index, group, clip): groups cycle so every fold has train and test
    for c in range(len(UCF_CLASSES)):
        for j in range(n // len(UCF_CLASSES) + int(rank[c] < n % len(UCF_CLASSES))):
            clips.append((c, (c + j) % UCF_GROUPS + 1, j // UCF_GROUPS + 1))
    lists, videos = root / "ucfTrainTestlist", root / "UCF-101"
    lists.mkdir()
    lines = [f"{i} {name}\r\n" for i, name in enumerate(UCF_CLASSES, start=1)]
    (lists / "classInd.txt").write_text("".join(lines), newline="")
    names = [_ucf_name(*clip) for clip in clips]
    for fold in (1, 2, 3):
        test = range(7 * fold - 6, 7 * fold + 1)
        train, tests = [], []
        for (c, g, _), name in zip(clips, names, strict=True):
            if g in test:
                tests.append(f"{UCF_CLASSES[c]}/{name}\r\n")
            else:
                train.append(f"{UCF_CLASSES[c]}/{name} {c + 1}\r\n")
        (lists / f"trainlist{fold:02d}.txt").write_text("".join(train), newline="")
        (lists / f"testlist{fold:02d}.txt").write_text("".join(tests), newline="")
    for c in sorted({c for c, _, _ in clips}):
        (videos / UCF_ON_DISK.get(UCF_CLASSES[c], UCF_CLASSES[c])).mkdir(parents=True)
    jobs = [(str(videos), [(*clip, k * UCF_CHUNK + i) for i, clip in enumerate(chunk)], seed)
            for k, chunk in _chunks(clips, UCF_CHUNK)]  # fmt: skip
    return _map(_ucf_chunk, jobs, workers)


def _ucf_name(c: int, group: int, clip: int) -> str:
    disk = UCF_ON_DISK.get(UCF_CLASSES[c], UCF_CLASSES[c])
    return f"v_{disk}_g{group:02d}_c{clip:02d}.avi"


def _ucf_chunk(videos: str, clips: list[tuple[int, int, int, int]], seed: int) -> int:
    for c, group, clip, index in clips:
        rng = np.random.default_rng([seed, 2, index])
        frames = moving_shape(c, int(rng.uniform(4, 10) * UCF_FPS), rng)
        folder = UCF_ON_DISK.get(UCF_CLASSES[c], UCF_CLASSES[c])
        encode_avi(frames, Path(videos, folder, _ucf_name(c, group, clip)))
    return len(clips)


def moving_shape(c: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """``uint8 [T, 240, 320, 3]``: class ``c``'s shape, colour and direction (``c`` mod 3, by
    24, and by 3 mod 8) moving and bouncing over a blocky background of its own."""
    h, w = UCF_SIZE
    blocks = rng.integers(30, 160, (h // 40, w // 40, 3), dtype=np.uint8)
    background = np.kron(blocks, np.ones((40, 40, 1), dtype=np.uint8))
    side = int(rng.integers(30, 70))
    mask = _shape_mask(SHAPES[c % 3], side)
    colour = np.array(list(COLOURS.values())[(c // 24) % len(COLOURS)], dtype=np.uint8)
    dx, dy = DIRECTIONS[(c // 3) % len(DIRECTIONS)]
    speed = rng.uniform(2.0, 5.0)
    x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
    out = np.empty((frames, h, w, 3), dtype=np.uint8)
    out[:] = background
    for t in range(frames):
        x, y = x + dx * speed, y + dy * speed
        if not 0 <= x <= w - side:
            dx, x = -dx, min(max(x, 0), w - side)
        if not 0 <= y <= h - side:
            dy, y = -dy, min(max(y, 0), h - side)
        out[t, int(y) : int(y) + side, int(x) : int(x) + side][mask] = colour
    return out


def _shape_mask(shape: str, side: int) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side] / max(1, side - 1)
    if shape == "circle":
        return (yy - 0.5) ** 2 + (xx - 0.5) ** 2 <= 0.25
    if shape == "triangle":
        return np.abs(xx - 0.5) <= yy / 2
    return np.ones((side, side), dtype=bool)


def encode_avi(frames: np.ndarray, path: Path, fps: int = UCF_FPS) -> None:
    """``uint8 [T, H, W, 3]`` as UCF101 stores clips: XVID (MPEG-4 part 2) in AVI, one thread,
    bit-exact (the same frames give the same bytes)."""
    import imageio_ffmpeg

    _, h, w, _ = frames.shape
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo",
        "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-threads", "1",
        "-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "5", "-pix_fmt", "yuv420p",
        "-fflags", "+bitexact", "-flags", "+bitexact", "-f", "avi", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)


# -- COCO captions ------------------------------------------------------------------------------
def _coco(root: Path, fraction: Fraction, seed: int, workers: int) -> int:
    rng = np.random.default_rng([seed, 3])
    counts = {
        "train2017": scaled(COCO_TRAIN, fraction, 8),
        "val2017": scaled(COCO_VAL, fraction, 4),
    }
    ids = (rng.choice(600_000, size=sum(counts.values()), replace=False) + 1).tolist()
    (root / "annotations").mkdir()
    jobs, start, caption_id = [], 0, 0
    for split, count in counts.items():
        (root / split).mkdir()
        images, annotations, todo = [], [], []
        for index in range(start, start + count):
            w, h = COCO_SIZES[int(rng.integers(len(COCO_SIZES)))]
            scene = _coco_scene(rng)
            name = f"{ids[index]:012d}.jpg"
            images.append({"license": int(rng.integers(1, 9)), "file_name": name, "coco_url": "",
                           "height": h, "width": w, "date_captured": "2013-11-14 16:28:13",
                           "flickr_url": "", "id": ids[index]})  # fmt: skip
            for caption in _coco_captions(scene):
                caption_id += 1
                annotations.append({"image_id": ids[index], "id": caption_id, "caption": caption})
            todo.append((f"{split}/{name}", w, h, scene, index))
        order = rng.permutation(len(annotations))  # the real files do not group them by image
        doc = {
            "info": {"description": "COCO-style captions generated by mmkit", "version": "1.0",
                     "year": 2017, "contributor": "mmkit", "date_created": "2017/09/01"},
            "licenses": [{"url": "", "id": k, "name": f"license {k}"} for k in range(1, 9)],
            "images": images,
            "annotations": [annotations[i] for i in order],
        }  # fmt: skip
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(doc))
        jobs += [(str(root), chunk, seed) for _, chunk in _chunks(todo, COCO_CHUNK)]
        start += count
    return _map(_coco_chunk, jobs, workers)


def _coco_scene(rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """One to three ``(shape, colour, place)`` objects, at distinct places."""
    places = rng.permutation(len(PLACES))[: int(rng.integers(1, 4))]
    return [(SHAPES[int(rng.integers(3))], list(COLOURS)[int(rng.integers(len(COLOURS)))],
             PLACES[p]) for p in places]  # fmt: skip


def _coco_captions(scene: list[tuple[str, str, str]]) -> list[str]:
    (shape, colour, place), rest = scene[0], scene[1:]
    others = " and ".join(f"a {c} {s}" for s, c, _ in rest) or "nothing else"
    count = ["one shape", "two shapes", "three shapes"][len(scene) - 1]
    return [
        f"A {colour} {shape} on the {place} of the picture.",
        f"a {colour} {shape} next to {others}",
        f"A picture of {count} over a noisy background.",
        f"There is a {shape} in {colour} on the {place} side.",
        f"{count.capitalize()}, the first a {colour} {shape}.",
    ]


def _coco_chunk(root: str, todo: list, seed: int) -> int:
    from PIL import Image, ImageDraw

    for name, w, h, scene, index in todo:
        rng = np.random.default_rng([seed, 3, index])
        coarse = rng.integers(90, 230, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        pixels = np.kron(coarse, np.ones((16, 16, 1), dtype=np.uint8))[:h, :w]
        pixels = pixels + rng.integers(0, 24, pixels.shape, dtype=np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        r = min(w, h) // 7
        for shape, colour, place in scene:
            cx = {"left": w // 5, "middle": w // 2, "right": 4 * w // 5}[place]
            cy = h // 2 + int(rng.integers(-h // 5, h // 5))
            box = (cx - r, cy - r, cx + r, cy + r)
            fill = COLOURS[colour]
            if shape == "circle":
                draw.ellipse(box, fill=fill)
            elif shape == "square":
                draw.rectangle(box, fill=fill)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        image.save(Path(root, name), quality=85)
    return len(todo)


MAKERS: dict[str, Callable[[Path, Fraction, int, int], int]] = {
    "speech_commands": _speech,
    "ucf101": _ucf,
    "coco": _coco,
}
