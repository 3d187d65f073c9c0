"""Real test videos made here with imageio-ffmpeg's ffmpeg: encoder, motion task, dataset layouts.

- :func:`encode_video` writes uint8 frames with the codec the extension implies (or any codec),
  optionally with rotation metadata or a variable frame rate.
- :func:`motion_clip` / :func:`make_motion_set`: a task that needs time to solve. An object of
  random shape, colour, size, speed and start moves left/right/up/down over a textured background;
  the frame wraps around (a torus), so where it is in any single frame says nothing about the
  class. Clips carry a ``source`` (the scene: background style and texture) so whole scenes can be
  held out.
- Layout writers for docs/design.md live in :mod:`tests.media.video_layouts`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from mmkit.io.video import probe

DIRECTIONS = ("left", "right", "up", "down")
BACKGROUNDS = ("noise", "stripes", "checker", "gradient")
SHAPES = ("disc", "square", "diamond", "ring", "cross")

CODECS = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".webm": "libvpx-vp9",
    ".avi": "mpeg4",
}
# Codec options for near-transparent quality at speed; frames must survive for colour checks.
_CODEC_OPTIONS = {
    "libx264": ["-preset", "veryfast", "-crf", "16"],
    "libx265": ["-preset", "veryfast", "-crf", "16"],
    "libvpx-vp9": ["-deadline", "realtime", "-cpu-used", "8", "-crf", "16", "-b:v", "0"],
    "mpeg4": ["-q:v", "2"],
    "mjpeg": ["-q:v", "2"],
}
_EVEN_ONLY_420 = ("libx264", "libx265")  # refuse odd sizes in 4:2:0; vp9/mpeg4/mjpeg/ffv1 cope


def encode_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: float,
    codec: str | None = None,
    *,
    rotation: int | None = None,
    vfr: bool = False,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode uint8 RGB ``frames [T, H, W, 3]`` to ``path``; the codec defaults by extension.

    ``.mp4/.mov/.mkv`` h264, ``.webm`` vp9, ``.avi`` mpeg4 (XVID tag). libx264 cannot store odd
    sizes in 4:2:0, so odd frames switch to ``yuv444p`` there: the file keeps the exact size.
    ``rotation`` (0/90/180/270) stores display-matrix metadata meaning "players turn the stored
    frames this many degrees clockwise" (the legacy ``rotate`` tag); the pixels are not touched.
    ``vfr=True`` gives a variable frame rate: the first half of the frames is ``1/fps`` apart, the
    rest ``2/fps`` apart (timestamps kept with ``-fps_mode passthrough``).
    """
    path = Path(path)
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    codec = codec or CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"no default codec for {path.suffix!r}; pass codec=")
    if rotation is not None and rotation % 90:
        raise ValueError(f"rotation ({rotation}) must be a multiple of 90")
    _, height, width, _ = frames.shape
    if codec in _EVEN_ONLY_420 and pix_fmt == "yuv420p" and (height % 2 or width % 2):
        pix_fmt = "yuv444p"
    output_params = codec_options(codec, path.suffix)
    if vfr:
        half = len(frames) // 2
        setpts = f"setpts=(N+max(N-{half}\\,0))/(FR*TB)"  # frames after half: twice as far apart
        output_params += ["-vf", setpts, "-fps_mode", "passthrough"]
    target = path.with_name(f".{path.stem}.tmp{path.suffix}") if rotation else path
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(target), (width, height), fps=Fraction(fps).limit_denominator(1001), codec=codec,
        pix_fmt_out=pix_fmt, quality=None, macro_block_size=1, ffmpeg_log_level="error",
        output_params=output_params,
    )  # fmt: skip
    writer.send(None)
    for frame in frames:
        writer.send(frame)
    writer.close()
    if rotation:
        _set_rotation(target, path, rotation)
    return path


def codec_options(codec: str, suffix: str) -> list[str]:
    """Encoder options used here: near-transparent quality at speed (+ XVID tag in ``.avi``)."""
    options = list(_CODEC_OPTIONS.get(codec, []))
    if codec == "mpeg4" and suffix.lower() == ".avi":
        options += ["-vtag", "XVID"]
    return options


def transcode_video(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], codec: str | None = None
) -> Path:
    """Re-encode ``src`` into ``dst`` (codec by ``dst``'s extension), keeping frames and timing."""
    dst = Path(dst)
    codec = codec or CODECS.get(dst.suffix.lower())
    if codec is None:
        raise ValueError(f"no default codec for {dst.suffix!r}; pass codec=")
    dst.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-i", str(src), "-map", "0:v:0", "-c:v", codec, *codec_options(codec, dst.suffix),
        "-fps_mode", "passthrough", str(dst),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ValueError(f"cannot transcode {src} to {dst.name}: {proc.stderr.strip()}")
    return dst


def _set_rotation(src: Path, dst: Path, rotation: int) -> None:
    # -display_rotation is an input option and counts counter-clockwise; remux without re-encoding.
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-display_rotation", str(-rotation), "-i", str(src), "-map", "0", "-c", "copy", str(dst),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    src.unlink()
    if proc.returncode != 0:
        raise ValueError(f"cannot store rotation in {dst.name}: {proc.stderr.strip()}")
    if probe(dst).rotation != rotation % 360:
        dst.unlink()
        raise ValueError(f"the {dst.suffix} container does not keep rotation metadata")


def make_background(style: str, size: tuple[int, int], seed: int) -> np.ndarray:
    """A static textured scene ``float32 [H, W, 3]`` in 0..255 (``style`` from BACKGROUNDS)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Mid-tone scenes with gentle texture (+-40): the moving object must stay the salient thing.
    c1 = rng.uniform(70, 185, size=3).astype(np.float32)
    c2 = np.clip(c1 + rng.uniform(-40, 40, size=3), 20, 235).astype(np.float32)
    if style == "noise":
        cells = rng.integers(3, 7)
        coarse = (c1 + rng.uniform(-40, 40, size=(cells, cells, 3))).astype(np.float32)
        iy = np.minimum((yy / h * (cells - 1)), cells - 1.001)
        ix = np.minimum((xx / w * (cells - 1)), cells - 1.001)
        y0, x0 = iy.astype(int), ix.astype(int)
        fy, fx = (iy - y0)[..., None], (ix - x0)[..., None]
        top = coarse[y0, x0] * (1 - fx) + coarse[y0, x0 + 1] * fx
        bottom = coarse[y0 + 1, x0] * (1 - fx) + coarse[y0 + 1, x0 + 1] * fx
        img = top * (1 - fy) + bottom * fy
    elif style in ("stripes", "gradient"):
        angle = rng.uniform(0, np.pi)
        u = (xx * np.cos(angle) + yy * np.sin(angle)) / max(h, w)
        if style == "stripes":
            t = 0.5 + 0.5 * np.sin(2 * np.pi * u * rng.uniform(1, 3) + rng.uniform(0, 2 * np.pi))
        else:
            t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
        img = c1 + (c2 - c1) * t[..., None]
    elif style == "checker":
        cell = rng.integers(max(2, min(h, w) // 8), max(3, min(h, w) // 3))
        oy, ox = rng.integers(0, cell, size=2)
        t = (((yy + oy) // cell + (xx + ox) // cell) % 2).astype(np.float32)
        img = c1 + (c2 - c1) * t[..., None]
    else:
        raise ValueError(f"style must be one of {', '.join(BACKGROUNDS)}, got {style!r}")
    return img + rng.normal(0, 4, size=(h, w, 3)).astype(np.float32)


def _shape_coverage(shape: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a shape of radius ``r`` at offsets ``dy, dx``."""
    if shape == "disc":
        dist = np.hypot(dy, dx) - r
    elif shape == "square":
        dist = np.maximum(abs(dy), abs(dx)) - r * 0.85
    elif shape == "diamond":
        dist = (abs(dy) + abs(dx)) / 1.3 - r * 0.9
    elif shape == "ring":
        dist = abs(np.hypot(dy, dx) - r * 0.7) - r * 0.3
    elif shape == "cross":
        arm = r * 0.35
        dist = np.minimum(
            np.maximum(abs(dy) - r, abs(dx) - arm), np.maximum(abs(dx) - r, abs(dy) - arm)
        )
    else:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    return np.clip(0.5 - dist, 0.0, 1.0)


def motion_clip(
    direction: str,
    *,
    num_frames: int = 16,
    size: int | tuple[int, int] = 64,
    seed: int = 0,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """A clip ``uint8 [T, H, W, 3]`` of one object moving ``direction`` (left/right/up/down).

    Shape, colour, radius, speed (4-8 % of the frame per step) and start are drawn from ``seed``.
    The frame is a torus (the object leaving one edge shows at the opposite edge), so the object's
    position in any frame is uniform whatever the class: only change over time tells the class.
    ``background`` (from :func:`make_background`) fixes the scene; by default a random one is
    drawn from ``seed``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    rng = np.random.default_rng(seed)
    h, w = (size, size) if isinstance(size, int) else size
    if background is None:
        background = make_background(str(rng.choice(BACKGROUNDS)), (h, w), int(rng.integers(2**31)))
    shape = str(rng.choice(SHAPES))
    radius = rng.uniform(0.12, 0.2) * min(h, w)
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    scene = background.mean(axis=(0, 1))
    if np.abs(colour - scene).sum() < 180:  # too close to the scene: go dark or light
        dark, light = rng.uniform(0, 50, size=3), rng.uniform(205, 255, size=3)
        colour = np.where(scene > 127, dark, light).astype(np.float32)
    horizontal = direction in ("left", "right")
    speed = rng.uniform(0.04, 0.08) * (w if horizontal else h)
    speed *= 1 if direction in ("right", "down") else -1
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    for t in range(num_frames):
        jitter = rng.normal(0, 0.3)
        y, x = (cy + jitter, cx + speed * t) if horizontal else (cy + speed * t, cx + jitter)
        # Offsets on the torus: what leaves one edge shows at the opposite one at the same time.
        dy = (yy - y + h / 2) % h - h / 2
        dx = (xx - x + w / 2) % w - w / 2
        alpha = _shape_coverage(shape, dy, dx, radius)[..., None]
        frame = background * (1 - alpha) + colour * alpha + rng.normal(0, 3, size=(h, w, 1))
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True)
class VideoClip:
    """One encoded clip of a test set: where it is, its class, its scene and its split."""

    path: Path
    label: str
    source: str
    split: str | None = None


DEFAULT_SOURCE_SPLITS = {"train": (0, 1, 2, 3), "val": (4,), "test": (5,)}


def make_motion_set(
    root: str | os.PathLike[str],
    n_per_class: int,
    *,
    seed: int,
    ext: str = ".mp4",
    num_frames: int = 16,
    size: int | tuple[int, int] = 64,
    fps: float = 12,
    directions: Sequence[str] = DIRECTIONS,
    source_splits: Mapping[str, Sequence[int]] = DEFAULT_SOURCE_SPLITS,
    workers: int = 2,
) -> list[VideoClip]:
    """Encode ``n_per_class`` motion clips per direction to ``root/<label>/<label>_NNN_sK<ext>``.

    Sources (scenes) are dealt round-robin to the clips of each class; ``source_splits`` assigns
    whole sources to splits, so val/test scenes are never seen in training. Source ``k`` uses
    background style ``BACKGROUNDS[k % 4]`` with its own texture. Returns clips in a fixed order.
    """
    root = Path(root)
    sources = sorted(s for ids in source_splits.values() for s in ids)
    split_of = {s: name for name, ids in source_splits.items() for s in ids}
    hw = (size, size) if isinstance(size, int) else tuple(size)
    scenes = {
        s: make_background(BACKGROUNDS[s % len(BACKGROUNDS)], hw, seed * 1000 + s) for s in sources
    }
    jobs = []
    for ci, label in enumerate(directions):
        for i in range(n_per_class):
            src = sources[i % len(sources)]
            clip_seed = seed * 1_000_003 + ci * 10_007 + i
            path = root / label / f"{label}_{i:03d}_s{src}{ext}"
            jobs.append((VideoClip(path, label, f"s{src}", split_of[src]), clip_seed, scenes[src]))

    def encode(job: tuple[VideoClip, int, np.ndarray]) -> VideoClip:
        clip, clip_seed, scene = job
        frames = motion_clip(
            clip.label, num_frames=num_frames, size=hw, seed=clip_seed, background=scene
        )
        encode_video(clip.path, frames, fps)
        return clip

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(encode, jobs))
