"""Data the benchmark generates: real encoded files, made on this machine, seeded.

- Audio: a folder per class (``train/``, ``val/``) of 1-3 s clips in the mix of formats a user's
  folder holds (16 kHz WAV, 44.1 kHz stereo FLAC, 48 kHz Ogg Vorbis, 44.1 kHz MP3, 24-bit 48 kHz
  stereo WAV), each class a harmonic tone with its own pitch and rhythm; and a Hugging Face
  parquet dataset (an ``audio`` struct column of WAV bytes, a ``label`` ClassLabel) whose train
  split can be scaled up to see how ``prepare`` grows.
- Video: UCF101-like clips (320x240, 25 fps, h264 mp4, 3-5 s) encoded by the bundled ffmpeg,
  a textured square moving in the class's direction.
- Image-text: JPEG scenes of a coloured shape at a position, with two captions each.
"""

from __future__ import annotations

import csv
import io
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AUDIO_FORMATS = (  # (extension, soundfile format, subtype, sample rate, channels)
    ("wav", "WAV", "PCM_16", 16000, 1),
    ("flac", "FLAC", "PCM_16", 44100, 2),
    ("ogg", "OGG", "VORBIS", 48000, 1),
    ("mp3", "MP3", "MPEG_LAYER_III", 44100, 2),
    ("wav", "WAV", "PCM_24", 48000, 2),
)
SPLIT_FOLDERS = {"train": "train", "validation": "val"}


def tone(label: int, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Class ``label``'s sound: a harmonic tone at its own pitch, pulsed at its own rate, in
    noise; ``float32 [T]`` in [-1, 1]."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 180.0 * 2 ** (label / 4) * rng.uniform(0.97, 1.03)
    wave = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
    pulse = 0.55 + 0.45 * np.sin(2 * np.pi * (1.5 + label) * t + rng.uniform(0, 6.3))
    noise = rng.normal(0, 0.05, t.size)
    out = 0.4 * wave * pulse + noise
    return (out / max(1.0, np.abs(out).max())).astype(np.float32)


def encode_audio(wave: np.ndarray, rate: int, fmt: str, subtype: str, channels: int) -> bytes:
    """``wave`` encoded as one file of ``fmt``/``subtype`` (soundfile)."""
    import soundfile as sf

    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def audio_folder(
    root: Path, *, train: int, validation: int, classes: int = 8, seed: int = 0
) -> list[Path]:
    """``root/{train,val}/<class>/<n>.<ext>``, formats cycling through :data:`AUDIO_FORMATS`;
    returns the train files in order."""
    rng = np.random.default_rng(seed)
    train_files = []
    for split, count in (("train", train), ("validation", validation)):
        for n in range(count):
            label = n % classes
            ext, fmt, subtype, rate, channels = AUDIO_FORMATS[n % len(AUDIO_FORMATS)]
            wave = tone(label, rng.uniform(1.0, 3.0), rate, rng)
            path = root / SPLIT_FOLDERS[split] / f"class{label}" / f"{n:05d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_audio(wave, rate, fmt, subtype, channels))
            if split == "train":
                train_files.append(path)
    return train_files


def audio_parquet_shards(
    root: Path, *, shards: int, rows: int, validation: int, seconds: float, seed: int = 0
) -> list[Path]:
    """Hugging Face parquet files in ``root``: ``shards`` train files of ``rows`` rows and one
    validation file, each with an ``audio`` column (``{"bytes", "path"}``: a distinct 16 kHz
    WAV of ``seconds`` per row) and a ``label`` ClassLabel, 64 rows per row group as
    ``datasets`` writes them. Returns the train files."""
    import datasets

    datasets.disable_progress_bars()
    classes, rate = 8, 16000
    rng = np.random.default_rng(seed)
    features = datasets.Features(
        {
            "audio": datasets.Audio(decode=False),
            "label": datasets.ClassLabel(names=[f"class{k}" for k in range(classes)]),
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    parts = [(f"train-{k:05d}-of-{shards:05d}", rows) for k in range(shards)]
    files = []
    bases = [tone(label, seconds, rate, rng) for label in range(classes)]
    for name, count in [*parts, ("validation-00000-of-00001", validation)]:
        audio, labels = [], []
        for n in range(count):  # each row its class's tone, shifted, in fresh noise
            wave = np.roll(bases[n % classes], int(rng.integers(0, rate)))
            wave = wave + rng.standard_normal(wave.size, dtype=np.float32) * 0.03
            wav = encode_audio(np.clip(wave, -1, 1), rate, "WAV", "PCM_16", 1)
            audio.append({"bytes": wav, "path": f"{name}-{n:05d}.wav"})
            labels.append(n % classes)
        table = datasets.Dataset.from_dict({"audio": audio, "label": labels}).cast(features)
        table.to_parquet(str(root / f"{name}.parquet"), batch_size=64)
        del audio, table
        if name.startswith("train"):
            files.append(root / f"{name}.parquet")
    return files


def scaled_view(shards: Path, out: Path, count: int) -> Path:
    """A dataset folder ``out/data`` holding (links to) the first ``count`` train shards of
    :func:`audio_parquet_shards` and its validation file."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    train = sorted(shards.glob("train-*.parquet"))[:count]
    links = {f"train-{k:05d}-of-{count:05d}.parquet": f for k, f in enumerate(train)}
    links["validation-00000-of-00001.parquet"] = next(shards.glob("validation-*.parquet"))
    for name, target in links.items():
        if not (data / name).exists():
            (data / name).symlink_to(target.resolve())
    return out


VIDEO_DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def moving_square(
    direction: tuple[int, int], frames: int, size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """``uint8 [T, H, W, 3]``: a textured square crossing a noisy background along
    ``direction``."""
    h, w = size
    background = rng.integers(0, 90, (h // 8, w // 8, 3), dtype=np.uint8)
    background = np.kron(background, np.ones((8, 8, 1), dtype=np.uint8))
    side = h // 3
    patch = rng.integers(120, 255, (side, side, 3), dtype=np.uint8)
    out = np.empty((frames, h, w, 3), dtype=np.uint8)
    y0, x0 = rng.integers(0, h - side), rng.integers(0, w - side)
    speed = rng.uniform(2.0, 4.0)
    for t in range(frames):
        out[t] = background
        y = int(y0 + direction[1] * speed * t) % (h - side)
        x = int(x0 + direction[0] * speed * t) % (w - side)
        out[t, y : y + side, x : x + side] = patch
    return out


def encode_video(frames: np.ndarray, path: Path, fps: int = 25) -> None:
    """Encode ``uint8 [T, H, W, 3]`` as h264 mp4 with the bundled ffmpeg."""
    import imageio_ffmpeg

    _, h, w, _ = frames.shape
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo",
        "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)


def video_folder(root: Path, *, train: int, validation: int, seed: int = 0) -> list[Path]:
    """``root/{train,val}/<direction>/<n>.mp4``: 320x240 clips of 3-5 s at 25 fps."""
    rng = np.random.default_rng(seed)
    names = list(VIDEO_DIRECTIONS)
    train_files = []
    for split, count in (("train", train), ("validation", validation)):
        for n in range(count):
            name = names[n % len(names)]
            frames = moving_square(
                VIDEO_DIRECTIONS[name], int(rng.integers(75, 126)), (240, 320), rng
            )
            path = root / SPLIT_FOLDERS[split] / name / f"{n:05d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            encode_video(frames, path)
            if split == "train":
                train_files.append(path)
    return train_files


SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220)}
PLACES = ("left", "centre", "right")


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    place: str


def draw_scene(scene: Scene, size: int, rng: np.random.Generator):
    """A Pillow image of ``scene`` on a noisy background."""
    from PIL import Image, ImageDraw

    pixels = rng.integers(150, 256, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    r = size // 6
    cx = {"left": size // 4, "centre": size // 2, "right": 3 * size // 4}[scene.place]
    cy = size // 2 + int(rng.integers(-size // 8, size // 8))
    fill = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif scene.shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return image


def caption_manifest(root: Path, *, train: int, validation: int, seed: int = 0) -> Path:
    """``root/captions.csv`` (``image,caption,split``; two captions per image) and 96 px JPEG
    scenes in ``root/images``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count in (("train", train), ("validation", validation)):
        for n in range(count):
            scene = Scene(
                SHAPES[n % 3], list(COLOURS)[(n // 3) % 3], PLACES[int(rng.integers(0, 3))]
            )
            name = f"images/{split}-{n:05d}.jpg"
            draw_scene(scene, 96, rng).save(root / name, quality=90)
            rows.append([name, f"a {scene.colour} {scene.shape} on the {scene.place}", split])
            rows.append([name, f"{scene.colour} {scene.shape}, {scene.place} side", split])
    with open(root / "captions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption", "split"])
        writer.writerows(rows)
    return root / "captions.csv"
