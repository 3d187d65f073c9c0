"""Camera-motion clips cut from "footage": train on some source videos, test on others.

There is no camera footage on this machine and no network, so the footage is made as real as the
machine allows, from sources of several DIFFERENT kinds so that held-out sources really differ:

- photographs that ship with installed packages (scikit-learn's ``china.jpg`` / ``flower.jpg``,
  matplotlib's ``grace_hopper.jpg``) and a hill-shaded real elevation model (matplotlib's
  ``jacksboro_fault_dem.npz``);
- ffmpeg's own generators (the ffmpeg imageio-ffmpeg ships): ``mandelbrot``, ``cellauto``,
  ``sierpinski`` (stills), ``life``, ``testsrc2`` and colourised ``perlin`` noise (animated: the
  scene moves on its own while the camera moves, as in real footage);
- Pillow-drawn scenes (a city street, a landscape, a dead-leaves clutter of shapes, which has
  natural-image statistics) and coloured 1/f noise.

A clip is a virtual camera moving over one source: ``pan_left`` / ``pan_right`` / ``tilt_up`` /
``tilt_down`` (the view moves that way, so the content moves the other way) or ``zoom_in`` /
``zoom_out``, at a random speed with a constant or eased profile, some drift across the main
direction, hand-held shake (a smoothed random walk), exposure drift and sensor noise. Labels name
the camera's motion, so a horizontal flip swaps ``pan_left`` and ``pan_right``. Two more motions,
``roll_cw`` / ``roll_ccw`` (the camera turns about its optical axis, so the picture turns the
other way), are not in the camera-motion protocol's :data:`LABELS`; a :class:`DataSpec` with
``labels`` asks for them (the transfer protocol's new task). A label's clips do not depend on
which other labels a spec names.

Training clips (``<root>/train/<label>/<source>_<nnn>.mp4``, h264, 96x96, 32 frames, no split:
what a user's folder looks like) come from :data:`TRAIN_SOURCES`; ``train.csv`` lists them with a
``group`` column (the source). Test clips come from :data:`TEST_SOURCES` only, 24-48 frames long,
in the containers, codecs and frame sizes of :data:`TEST_FORMATS` (none of which training has),
at lower quality; ``test.csv`` lists them (``path,label,group,format``). Everything is seeded, so
the same :class:`DataSpec` writes the same files; :func:`ensure_data` caches them by spec.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DATA_VERSION = 1
LABELS = ("pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out")
ROLL_LABELS = ("roll_cw", "roll_ccw")
ALL_LABELS = LABELS + ROLL_LABELS  # a label's index here seeds its clips
# name -> (kind, seed). Kinds are the builders of SOURCE_KINDS.
TRAIN_SOURCES: dict[str, tuple[str, int]] = {
    "china": ("photo_china", 0),
    "jacksboro": ("terrain", 0),
    "mandelbrot": ("mandelbrot", 0),
    "life": ("life", 1),
    "testsrc2": ("testsrc2", 0),
    "cellauto": ("cellauto", 2),
    "sierpinski": ("sierpinski", 3),
    "city": ("city", 1),
    "landscape1": ("landscape", 1),
    "pink1": ("pink_noise", 1),
}
TEST_SOURCES: dict[str, tuple[str, int]] = {
    "flower": ("photo_flower", 0),
    "hopper": ("photo_hopper", 0),
    "perlin": ("perlin", 5),
    "shapes": ("dead_leaves", 5),
    "landscape7": ("landscape", 7),
    "pink7": ("pink_noise", 7),
}
# (extension, codec, width, height, quality options): none is the training format.
TEST_FORMATS: tuple[tuple[str, str, int, int, tuple[str, ...]], ...] = (
    (".webm", "libvpx-vp9", 160, 90, ("-deadline", "realtime", "-cpu-used", "8", "-crf", "34",
                                      "-b:v", "0")),
    (".avi", "mpeg4", 97, 61, ("-q:v", "5", "-vtag", "XVID")),
    (".mkv", "libx264", 320, 240, ("-preset", "veryfast", "-crf", "28")),
    (".mov", "libx264", 224, 126, ("-preset", "veryfast", "-crf", "26")),
    (".mp4", "libx265", 176, 144, ("-preset", "ultrafast", "-crf", "28", "-x265-params",
                                   "log-level=error")),
    (".avi", "mjpeg", 144, 108, ("-q:v", "6")),
)  # fmt: skip
TRAIN_FORMAT = (".mp4", "libx264", 96, 96, ("-preset", "veryfast", "-crf", "18"))
SOURCE_SIZE = (720, 960)  # (height, width) of generated sources; photos keep their aspect
ANIMATED_FRAMES = 64


@dataclass(frozen=True)
class DataSpec:
    """What to generate. The defaults are the protocol's data (240 training clips, 60 test)."""

    train_per_class: int = 40
    test_per_class: int = 10
    train_frames: int = 32
    test_frames: tuple[int, int] = (24, 48)
    seed: int = 0
    source_scale: float = 1.0  # < 1 shrinks generated sources (fast tests)
    train_sources: tuple[str, ...] = tuple(TRAIN_SOURCES)
    test_sources: tuple[str, ...] = tuple(TEST_SOURCES)
    version: int = DATA_VERSION
    labels: tuple[str, ...] = LABELS  # any of ALL_LABELS

    def key(self) -> str:
        fields = asdict(self)
        if self.labels == LABELS:  # the key of a spec from before ``labels`` existed
            del fields["labels"]
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclass
class CameraData:
    """Where a generated set lives."""

    root: Path
    spec: DataSpec
    train_dir: Path = field(init=False)
    train_manifest: Path = field(init=False)
    test_manifest: Path = field(init=False)

    def __post_init__(self) -> None:
        self.train_dir = self.root / "train"
        self.train_manifest = self.root / "train.csv"
        self.test_manifest = self.root / "test.csv"

    def rows(self, which: str) -> list[dict[str, str]]:
        path = self.train_manifest if which == "train" else self.test_manifest
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    @property
    def train_files(self) -> int:
        return len(self.rows("train"))

    @property
    def test_files(self) -> int:
        return len(self.rows("test"))


# -- sources ---------------------------------------------------------------------------------


def _ffmpeg_frames(graph: str, size: tuple[int, int], frames: int, skip: int = 0) -> np.ndarray:
    """``frames`` RGB frames ``[N, H, W, 3]`` of a lavfi source graph (after ``skip`` frames)."""
    h, w = size
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", graph, "-vf", f"select=gte(n\\,{skip}),format=rgb24",
        "-frames:v", str(frames), "-fps_mode", "passthrough", "-f", "rawvideo", "-",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {graph!r}: {proc.stderr.decode(errors='replace').strip()}")
    data = np.frombuffer(proc.stdout, dtype=np.uint8)
    return data.reshape(-1, h, w, 3)[:frames].copy()


def _upscaled(graph: str, small: tuple[int, int], size: tuple[int, int]) -> str:
    """A lavfi graph rendered at ``small`` then scaled up to ``size`` (visible cells)."""
    return f"{graph}:s={small[1]}x{small[0]},scale={size[1]}:{size[0]}:flags=neighbor"


def _photo(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A photograph scaled so its short side matches the sources' (Lanczos), ``[1, H, W, 3]``."""
    img = Image.open(path).convert("RGB")
    scale = min(size) / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    return np.asarray(img)[None]


def _sklearn_image(name: str) -> Path:
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images" / name


def _mpl_sample(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


def _terrain(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """matplotlib's Jacksboro fault elevation model, hill-shaded over a terrain colour map."""
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    dem = np.load(_mpl_sample("jacksboro_fault_dem.npz"))["elevation"].astype(np.float64)
    light = LightSource(azdeg=float(rng.uniform(0, 360)), altdeg=45)
    rgb = light.shade(dem, cmap=colormaps["gist_earth"], vert_exag=0.08, blend_mode="soft")
    img = Image.fromarray((rgb[..., :3] * 255).astype(np.uint8))
    scale = min(size) / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    return np.asarray(img)[None]


def _pink_noise(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Coloured 1/f^a noise (a in 1.6..2.2), the power spectrum of natural images."""
    h, w = size
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    amp = radius ** -(rng.uniform(1.6, 2.2) / 2)  # amplitude: the square root of the power
    amp[0, 0] = 0.0
    channels = []
    base = np.fft.irfft2(amp * np.exp(2j * np.pi * rng.random(amp.shape)), s=(h, w))
    for _ in range(3):
        own = np.fft.irfft2(amp * np.exp(2j * np.pi * rng.random(amp.shape)), s=(h, w))
        channels.append(0.75 * base + 0.25 * own)
    img = np.stack(channels, -1)
    img = (img - img.mean()) / img.std()
    tint = rng.uniform(80, 170, size=3)
    return np.clip(tint + img * rng.uniform(35, 55), 0, 255).astype(np.uint8)[None]


def _colour(rng: np.random.Generator, lo: int = 30, hi: int = 230) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))


def _finish(img: Image.Image, rng: np.random.Generator, grain: float = 5.0) -> np.ndarray:
    """Slight blur (optics) and grain (sensor) on a drawn scene, ``[1, H, W, 3]``."""
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, grain, (img.height, img.width, 1))
    return np.clip(arr, 0, 255).astype(np.uint8)[None]


def _city(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A street of buildings with lit windows under a graded sky, a road and lamp posts."""
    h, w = size
    sky_top, sky_bottom = np.array(_colour(rng, 60, 160)), np.array(_colour(rng, 150, 240))
    t = np.linspace(0, 1, h)[:, None, None]
    sky = (sky_top * (1 - t) + sky_bottom * t) * np.ones((1, w, 1))
    img = Image.fromarray(sky.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    ground = int(h * rng.uniform(0.72, 0.82))
    for layer in range(3):  # far to near
        x = int(rng.integers(-40, 0))
        while x < w:
            bw = int(rng.integers(w // 14, w // 6))
            top = int(rng.integers(int(h * (0.08 + 0.12 * layer)), int(h * (0.45 + 0.1 * layer))))
            body = _colour(rng, 40 + 30 * layer, 150 + 30 * layer)
            draw.rectangle((x, top, x + bw, ground), fill=body, outline=(20, 20, 20))
            win = int(rng.integers(6, 14))
            lit = _colour(rng, 170, 255)
            for wy in range(top + win, ground - 2 * win, 2 * win):
                for wx in range(x + win // 2, x + bw - win, int(win * 1.8)):
                    on = rng.random() < 0.55
                    draw.rectangle((wx, wy, wx + win, wy + win), fill=lit if on else (35, 35, 45))
            x += bw + int(rng.integers(0, w // 30))
    draw.rectangle((0, ground, w, h), fill=_colour(rng, 50, 90))
    for x in range(0, w, int(rng.integers(60, 110))):  # road markings and lamp posts
        y = ground + (h - ground) // 2
        draw.rectangle((x, y - 3, x + 30, y + 3), fill=(230, 230, 210))
        draw.rectangle((x + 5, ground - 70, x + 9, ground), fill=(30, 30, 30))
        draw.ellipse((x - 4, ground - 80, x + 18, ground - 66), fill=(250, 240, 180))
    return _finish(img, rng)


def _landscape(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Sky with clouds, mountain ridges, textured hills and trees."""
    h, w = size
    t = np.linspace(0, 1, h)[:, None, None]
    sky = np.array(_colour(rng, 70, 150)) * (1 - t) + np.array(_colour(rng, 170, 250)) * t
    img = Image.fromarray((sky * np.ones((1, w, 1))).astype(np.uint8))
    clouds = Image.new("L", (w, h), 0)
    cd = ImageDraw.Draw(clouds)
    for _ in range(int(rng.integers(8, 16))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h * 0.45)
        rx, ry = rng.uniform(40, 160), rng.uniform(15, 45)
        cd.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(120, 230)))
    clouds = clouds.filter(ImageFilter.GaussianBlur(12))
    img = Image.composite(Image.new("RGB", (w, h), (245, 245, 250)), img, clouds)
    draw = ImageDraw.Draw(img)
    for layer in range(4):  # ridges: random walks, far (pale) to near (dark)
        base = h * (0.35 + 0.13 * layer)
        steps = rng.normal(0, 6 + 3 * layer, size=w // 4 + 2).cumsum()
        ys = base + steps - steps.mean()
        poly = [(i * 4, float(y)) for i, y in enumerate(ys)] + [(w, h), (0, h)]
        shade = np.array(_colour(rng, 40, 120)) * (1 - 0.15 * layer) + 60 * (3 - layer) / 3
        draw.polygon(poly, fill=tuple(int(v) for v in np.clip(shade, 0, 255)))
        for _ in range(int(rng.integers(10, 30)) * layer):  # trees on nearer ridges
            x = int(rng.integers(0, w))
            y = int(ys[min(x // 4, len(ys) - 1)]) + int(rng.integers(0, 40))
            th = int(rng.integers(12, 30 + 10 * layer))
            green = tuple(int(v) for v in rng.integers((10, 70, 10), (60, 140, 60)))
            draw.polygon([(x, y - th), (x - th // 3, y), (x + th // 3, y)], fill=green)
    return _finish(img, rng, grain=6.0)


def _dead_leaves(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The dead-leaves model: overlapping shapes with power-law sizes (natural-image statistics)."""
    h, w = size
    img = Image.new("RGB", (w, h), _colour(rng))
    draw = ImageDraw.Draw(img)
    for _ in range(2500):
        r = float(min(250.0, 4.0 * (1 - rng.random()) ** (-1 / 1.8)))  # Pareto radius
        cx, cy = rng.uniform(-r, w + r), rng.uniform(-r, h + r)
        fill = _colour(rng, 10, 245)
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((cx - r, cy - r * rng.uniform(0.5, 1), cx + r, cy + r), fill=fill)
        elif kind == 1:
            draw.rectangle((cx - r, cy - r * rng.uniform(0.4, 1), cx + r, cy + r), fill=fill)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 7))))
            pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]
            draw.polygon(pts, fill=fill)
    return _finish(img, rng, grain=4.0)


def _perlin(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """ffmpeg's animated Perlin noise, colourised with a random ramp."""
    seed = int(rng.integers(2**31))
    graph = (
        "perlin=octaves=5:persistence=0.6:xscale=4:yscale=4:tscale=0.05:random_mode=seed:"
        f"random_seed={seed}:s={size[1] // 3}x{size[0] // 3},"
        f"scale={size[1]}:{size[0]}:flags=bicubic"
    )
    gray = _ffmpeg_frames(graph, size, ANIMATED_FRAMES)[..., 0]
    lo_q, hi_q = np.percentile(gray[::4, ::4, ::4], [1, 99])
    g = np.clip((np.arange(256, dtype=np.float32) - lo_q) / max(hi_q - lo_q, 1.0), 0, 1)[:, None]
    lo, hi = (np.array(_colour(rng, a, b), np.float32) for a, b in ((10, 120), (130, 250)))
    mid = np.array(_colour(rng), np.float32)
    ramp = np.where(g < 0.5, lo + (mid - lo) * 2 * g, mid + (hi - mid) * (2 * g - 1))
    return np.clip(ramp, 0, 255).astype(np.uint8)[gray]  # a colour look-up table


def _lavfi(name: str) -> Callable[[tuple[int, int], np.random.Generator], np.ndarray]:
    """ffmpeg source generators: stills (one frame) or animated (ANIMATED_FRAMES frames)."""

    def build(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        h, w = size
        seed = int(rng.integers(2**31))
        small = (h // 3, w // 3)
        if name == "mandelbrot":
            graph = (
                f"mandelbrot=s={w}x{h}:start_scale={rng.uniform(0.02, 0.05):.4f}:"
                "outer=normalized_iteration_count:maxiter=1024"
            )
            return _ffmpeg_frames(graph, size, 1)
        if name == "life":
            graph = _upscaled(
                f"life=ratio=0.3:mold=12:seed={seed}:life_color=#e8e0b0:death_color=#202840:"
                "mold_color=#3c8050",
                small,
                size,
            )
            return _ffmpeg_frames(graph, size, ANIMATED_FRAMES, skip=30)
        if name == "testsrc2":
            return _ffmpeg_frames(f"testsrc2=s={w}x{h}", size, ANIMATED_FRAMES)
        if name == "cellauto":
            graph = _upscaled(f"cellauto=rule={int(rng.choice([30, 90, 110, 150]))}:seed={seed}:"
                              "random_fill_ratio=0.5", small, size)  # fmt: skip
            gray = _ffmpeg_frames(graph, size, 1, skip=small[0])
            tint = np.array(_colour(rng, 120, 255)) / 255
            return (40 + gray * tint * 0.8).astype(np.uint8)
        if name == "sierpinski":
            graph = f"sierpinski=s={w}x{h}:seed={seed}:type=carpet"
            return _ffmpeg_frames(graph, size, 1)
        raise ValueError(f"unknown ffmpeg source {name!r}")

    return build


SOURCE_KINDS: dict[str, Callable[[tuple[int, int], np.random.Generator], np.ndarray]] = {
    "photo_china": lambda size, rng: _photo(_sklearn_image("china.jpg"), size),
    "photo_flower": lambda size, rng: _photo(_sklearn_image("flower.jpg"), size),
    "photo_hopper": lambda size, rng: _photo(_mpl_sample("grace_hopper.jpg"), size),
    "terrain": _terrain,
    "pink_noise": _pink_noise,
    "city": _city,
    "landscape": _landscape,
    "dead_leaves": _dead_leaves,
    "perlin": _perlin,
    **{k: _lavfi(k) for k in ("mandelbrot", "life", "testsrc2", "cellauto", "sierpinski")},
}


def build_source(kind: str, seed: int, scale: float = 1.0) -> np.ndarray:
    """The footage of one source, uint8 ``[N, H, W, 3]`` (N = 1 for a still)."""
    h, w = SOURCE_SIZE
    size = (max(48, round(h * scale)) // 2 * 2, max(64, round(w * scale)) // 2 * 2)
    return SOURCE_KINDS[kind](size, np.random.default_rng(seed))


# -- camera ----------------------------------------------------------------------------------


def camera_boxes(
    label: str, n: int, aspect: float, src_hw: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """``[n, 4]`` view boxes ``(x0, y0, x1, y1)`` in source pixels (:func:`camera_path`'s)."""
    return camera_path(label, n, aspect, src_hw, rng)[0]


def camera_path(
    label: str, n: int, aspect: float, src_hw: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``[n, 4]`` view boxes ``(x0, y0, x1, y1)`` in source pixels for one camera motion, and
    ``[n]`` roll angles (radians, clockwise on screen; zero but for a roll).

    ``aspect`` is the output width / height. Speed is 1-3.5 % of the view per frame (zoom: the
    view size changes 1-3 % per frame; roll: 0.02-0.07 radians per frame, which moves the view's
    corners about as far), with drift across the motion of up to 25 % of it and hand-held shake;
    the whole path stays inside the source (the view shrinks until it fits; a roll's turning
    view, its circumscribed circle).
    """
    if label not in ALL_LABELS:
        raise ValueError(f"label must be one of {', '.join(ALL_LABELS)}, got {label!r}")
    src_h, src_w = src_hw
    t = np.arange(n, dtype=np.float64)
    u = t / max(1, n - 1)
    profile = t if rng.random() < 0.5 else (n - 1) * (3 * u**2 - 2 * u**3)  # constant or eased
    speed = rng.uniform(0.01, 0.035)
    drift = rng.uniform(-0.25, 0.25) * speed
    shake_sd = rng.uniform(0.0, 0.006)
    shake = np.zeros((n, 2))
    for i in range(1, n):
        shake[i] = 0.7 * shake[i - 1] + rng.normal(0, shake_sd, size=2)
    view_h = min(src_h * rng.uniform(0.35, 0.6), src_w * 0.9 / aspect)
    roll = label in ROLL_LABELS
    angles = (2 * speed * profile * (1 if label == "roll_cw" else -1)) if roll else np.zeros(n)
    for _ in range(40):
        size = np.full(n, view_h)
        if label.startswith(("zoom", "roll")):
            if not roll:
                rate = min(speed, np.log(4.0) / max(1, n - 1))  # at most 4x over the clip
                size = view_h * np.exp(rate * profile * (-1 if label == "zoom_in" else 1))
            dx = drift * profile * view_h * aspect * 0.5
            dy = rng.uniform(-0.25, 0.25) * speed * profile * view_h * 0.5
        else:
            main = speed * profile * (view_h * aspect if label.startswith("pan") else view_h)
            side = drift * profile * (view_h if label.startswith("pan") else view_h * aspect)
            sign = -1 if label in ("pan_left", "tilt_up") else 1
            dx, dy = (sign * main, side) if label.startswith("pan") else (side, sign * main)
        cx = dx + shake[:, 0] * view_h * aspect
        cy = dy + shake[:, 1] * view_h
        half_w, half_h = size * aspect / 2, size / 2
        fit_w, fit_h = (np.hypot(half_w, half_h),) * 2 if roll else (half_w, half_h)
        lo_x, hi_x = (fit_w - cx).max(), (src_w - fit_w - cx).min()
        lo_y, hi_y = (fit_h - cy).max(), (src_h - fit_h - cy).min()
        if lo_x <= hi_x and lo_y <= hi_y:
            ox, oy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
            x, y = cx + ox, cy + oy
            boxes = np.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=1)
            return boxes, angles
        view_h *= 0.9
    raise ValueError(f"a {label} path of {n} frames does not fit a {src_w}x{src_h} source")


def render_clip(
    footage: np.ndarray,
    label: str,
    n: int,
    out_wh: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """uint8 ``[n, H, W, 3]``: the camera's view of ``footage`` (stills held, animations run)."""
    w, h = out_wh
    boxes, angles = camera_path(label, n, w / h, footage.shape[1:3], rng)
    roll = label in ROLL_LABELS
    start = int(rng.integers(len(footage)))
    depth, cycles, phase = rng.uniform(0, 0.08), rng.uniform(1, 4), rng.uniform(0, 7)
    gain = 1 + depth * np.sin(np.linspace(0, cycles, n) + phase)  # exposure drift
    noise = rng.uniform(0, 3)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    images: dict[int, Image.Image] = {}
    for i, box in enumerate(boxes):
        k = _ping_pong(start + i, len(footage))
        if k not in images:
            image = Image.fromarray(footage[k])
            images = {k: _at_view_scale(image, h / (box[3] - box[1])) if roll else image}
        if roll:
            view = _turned_view(images[k], footage.shape[1:3], box, angles[i], out_wh)
        else:
            view = images[k].resize((w, h), Image.BILINEAR, box=tuple(float(v) for v in box))
        arr = np.asarray(view).astype(np.float32) * gain[i] + rng.normal(0, noise, (h, w, 1))
        out[i] = np.clip(arr, 0, 255).astype(np.uint8)
    return out


def _at_view_scale(image: Image.Image, scale: float) -> Image.Image:
    """``image`` scaled by ``scale`` (output pixels per source pixel; a roll keeps its view's
    size), with the same antialiased bilinear filter as an unturned view's resize."""
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR)


def _turned_view(
    scaled: Image.Image,
    src_hw: tuple[int, int],
    box: np.ndarray,
    angle: float,
    out_wh: tuple[int, int],
) -> Image.Image:
    """The view ``box`` (source pixels) turned by ``angle`` about its centre, sampled from the
    source already at the output's scale (:func:`_at_view_scale`). Bicubic: a bilinear second
    resampling blurred rolls visibly more than the other motions (mean |Laplacian| 17-29 against
    23-38 on four sources), a cue no camera has; bicubic lands within their range."""
    sx, sy = scaled.width / src_hw[1], scaled.height / src_hw[0]
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, hw, hh = (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy, (x1 - x0) / 2 * sx, (y1 - y0) / 2 * sy
    c, s = np.cos(angle), np.sin(angle)
    quad = []  # PIL's QUAD: the source corners of the output's upper-left, lower-left,
    for u, v in ((-hw, -hh), (-hw, hh), (hw, hh), (hw, -hh)):  # lower-right, upper-right
        quad += [cx + u * c - v * s, cy + u * s + v * c]
    return scaled.transform(out_wh, Image.QUAD, quad, Image.BICUBIC)


def _ping_pong(i: int, n: int) -> int:
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i %= period
    return i if i < n else period - i


def encode(path: Path, frames: np.ndarray, codec: str, options: Sequence[str], fps: float) -> None:
    """Encode uint8 ``frames`` with imageio-ffmpeg's ffmpeg (yuv420p; h264/h265 odd sizes 444)."""
    _, h, w, _ = frames.shape
    pix_fmt = "yuv444p" if codec in ("libx264", "libx265") and (h % 2 or w % 2) else "yuv420p"
    if codec == "mjpeg":
        pix_fmt = "yuvj420p"
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=Fraction(fps).limit_denominator(1001), codec=codec,
        pix_fmt_out=pix_fmt, quality=None, macro_block_size=1, ffmpeg_log_level="error",
        output_params=list(options),
    )  # fmt: skip
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


# -- the data set ----------------------------------------------------------------------------


def _clip_plan(spec: DataSpec) -> list[dict]:
    """Every clip to write: its split, label, source, format, frame count and seed."""
    plan = []
    for split, sources, per_class in (
        ("train", spec.train_sources, spec.train_per_class),
        ("test", spec.test_sources, spec.test_per_class),
    ):
        for label in spec.labels:
            ci = ALL_LABELS.index(label)  # not the position in spec.labels: see ALL_LABELS
            for i in range(per_class):
                source = sources[(i + ci) % len(sources)]
                seed = (spec.seed * 7919 + (split == "test") * 104729 + ci * 1009 + i) % 2**32
                rng = np.random.default_rng(seed)
                if split == "train":
                    fmt, frames, fps = TRAIN_FORMAT, spec.train_frames, 12.0
                else:
                    fmt = TEST_FORMATS[(i + 2 * ci) % len(TEST_FORMATS)]
                    frames = int(rng.integers(spec.test_frames[0], spec.test_frames[1] + 1))
                    fps = float(rng.choice([12.0, 15.0, 24.0, 25.0, 30.0]))
                ext = fmt[0]
                name = f"{source}_{i:03d}{ext}"
                rel = f"{split}/{label}/{name}"
                plan.append(
                    dict(split=split, label=label, source=source, fmt=fmt, frames=frames,
                         fps=fps, seed=seed, rel=rel)
                )  # fmt: skip
    return plan


def generate(root: Path, spec: DataSpec, workers: int = 1) -> CameraData:
    """Write the clips and manifests of ``spec`` under ``root`` (which must not exist yet)."""
    from concurrent.futures import ThreadPoolExecutor

    unknown = set(spec.train_sources) - set(TRAIN_SOURCES)
    unknown |= set(spec.test_sources) - set(TEST_SOURCES)
    if unknown:
        raise ValueError(f"unknown sources: {', '.join(sorted(unknown))}")
    if set(spec.train_sources) & set(spec.test_sources):
        raise ValueError("a source cannot be both a training and a test source")
    if not spec.labels or set(spec.labels) - set(ALL_LABELS):
        raise ValueError(f"labels must be some of {', '.join(ALL_LABELS)}, got {spec.labels}")
    plan = _clip_plan(spec)
    catalogue = {**TRAIN_SOURCES, **TEST_SOURCES}
    for source in dict.fromkeys(p["source"] for p in plan):  # one source in memory at a time
        kind, seed = catalogue[source]
        footage = build_source(kind, spec.seed * 1000 + seed, spec.source_scale)

        def write(p: dict, footage: np.ndarray = footage) -> None:
            _, codec, w, h, options = p["fmt"]
            rng = np.random.default_rng(p["seed"])
            frames = render_clip(footage, p["label"], p["frames"], (w, h), rng)
            encode(root / p["rel"], frames, codec, options, p["fps"])

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(write, [p for p in plan if p["source"] == source]))
    for split, columns in (("train", ("path", "label", "group")),
                           ("test", ("path", "label", "group", "format"))):  # fmt: skip
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for p in plan:
                if p["split"] != split:
                    continue
                ext, codec, w, h, _ = p["fmt"]
                row = {"path": p["rel"], "label": p["label"], "group": p["source"]}
                if split == "test":
                    row["format"] = f"{ext[1:]}/{codec} {w}x{h}"
                writer.writerow(row)
    (root / "spec.json").write_text(json.dumps(asdict(spec), indent=2))
    return CameraData(root, spec)


def ensure_data(cache: str | os.PathLike[str], spec: DataSpec, workers: int = 1) -> CameraData:
    """The data of ``spec`` under ``cache`` (generated once; a finished set has ``spec.json``)."""
    root = Path(cache).expanduser() / f"v{spec.version}-{spec.key()}"
    if (root / "spec.json").is_file():
        return CameraData(root, spec)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root.parent))
    try:
        generate(tmp, spec, workers)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CameraData(root, spec)
