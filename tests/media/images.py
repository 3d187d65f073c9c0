"""Captioned scenes drawn with Pillow whose captions are exactly true, for tests and the demo.

A :class:`Scene` is one or two coloured shapes at named positions ("a red circle on the left",
"a red circle on the left and a blue circle on the right"); every caption :func:`make_scene`
writes describes the drawing exactly. Two-object scenes use one shape in two colours at opposite
positions, so the class label (the shape) is always well defined. :func:`render_scene` draws a
scene with a random background tint, pixel noise, colour and size jitter; all objects lie in the
centred square of the canvas, so a short-side resize + centre crop keeps every caption true.
:func:`write_scene_images` renders a whole split set to jpg/png/webp files and
:func:`write_odd_images` writes awkward files (grayscale, RGBA, EXIF-rotated, corrupt...). The
writers for the dataset layouts (CSV/JSONL, caption folder, Flickr8k, COCO, HF) live in
:mod:`tests.media.image_layouts`. Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""Shape names, which are also the class labels (``label`` = index in this tuple)."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 35),
}
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "middle")
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "middle": "in the middle",
}
PAIRED_POSITIONS: tuple[tuple[str, str], ...] = (("left", "right"), ("top", "bottom"))
IMAGE_FORMATS: dict[str, tuple[str, dict[str, int]]] = {
    "jpg": ("JPEG", {"quality": 92}),
    "png": ("PNG", {}),
    "webp": ("WEBP", {"quality": 90}),
}
DEFAULT_SPLITS: dict[str, float] = {"train": 0.75, "validation": 0.1, "test": 0.15}

_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
# Object centre ranges as fractions of the centred square: (x_lo, x_hi, y_lo, y_hi).
_CENTRES = {
    "left": (0.18, 0.30, 0.38, 0.62),
    "right": (0.70, 0.82, 0.38, 0.62),
    "top": (0.38, 0.62, 0.18, 0.30),
    "bottom": (0.38, 0.62, 0.70, 0.82),
    "middle": (0.44, 0.56, 0.44, 0.56),
}
_RADIUS = (0.10, 0.15)  # object half-size as a fraction of the square's side
_SUPERSAMPLE = 3


@dataclass(frozen=True)
class SceneObject:
    """One shape of one colour at one named position."""

    shape: str
    colour: str
    position: str

    def phrase(self) -> str:
        """``"a red circle on the left"``."""
        return f"a {self.colour} {self.shape} {POSITION_PHRASES[self.position]}"


@dataclass(frozen=True)
class Scene:
    """What an image shows, with its captions (all exactly true) and class label (the shape)."""

    objects: tuple[SceneObject, ...]
    captions: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.objects[0].shape


@dataclass(frozen=True)
class CaptionedImage:
    """A rendered image file with its captions, split and class label."""

    path: Path
    captions: tuple[str, ...]
    split: str
    label: str
    scene: Scene


def _caption_variants(objects: tuple[SceneObject, ...]) -> list[str]:
    """Every phrasing of a scene; the first one is the canonical caption."""
    if len(objects) == 1:
        (o,) = objects
        where = POSITION_PHRASES[o.position]
        return [
            o.phrase(),
            f"{where} there is a {o.colour} {o.shape}",
            f"a {o.colour} {o.shape} {where} of the picture",
            f"a picture of a {o.colour} {o.shape} {where}",
        ]
    a, b = objects
    plural = _PLURAL[a.shape]
    pa, pb = POSITION_PHRASES[a.position], POSITION_PHRASES[b.position]
    return [
        f"{a.phrase()} and {b.phrase()}",
        f"{b.phrase()} and {a.phrase()}",
        f"two {plural}: a {a.colour} one {pa} and a {b.colour} one {pb}",
        f"a picture of {a.phrase()} and {b.phrase()}",
    ]


def make_scene(
    rng: np.random.Generator, *, two_objects: bool = False, captions_per_image: int = 2
) -> Scene:
    """Draw a random scene description; caption 0 is canonical, the rest random rephrasings."""
    if not 1 <= captions_per_image <= 4:
        raise ValueError(f"captions_per_image ({captions_per_image}) must be in 1..4")
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colours = list(COLOURS)
    if two_objects:
        first, second = PAIRED_POSITIONS[int(rng.integers(len(PAIRED_POSITIONS)))]
        if rng.random() < 0.5:
            first, second = second, first
        ca, cb = (colours[int(i)] for i in rng.choice(len(colours), size=2, replace=False))
        objects = (SceneObject(shape, ca, first), SceneObject(shape, cb, second))
    else:
        colour = colours[int(rng.integers(len(colours)))]
        objects = (SceneObject(shape, colour, POSITIONS[int(rng.integers(len(POSITIONS)))]),)
    variants = _caption_variants(objects)
    extra = rng.choice(np.arange(1, len(variants)), size=captions_per_image - 1, replace=False)
    return Scene(objects, (variants[0], *(variants[int(i)] for i in sorted(extra))))


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    fill: tuple[int, int, int],
) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        h = r * 0.88  # about the circle's area
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
    elif shape == "triangle":
        h = r * 1.15
        draw.polygon([(cx, cy - h), (cx + h, cy + h * 0.8), (cx - h, cy + h * 0.8)], fill=fill)
    elif shape == "cross":
        t = r * 0.34
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=fill)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def render_scene(
    scene: Scene, size: tuple[int, int], rng: np.random.Generator, *, noise: float = 6.0
) -> Image.Image:
    """Draw ``scene`` on a ``size = (width, height)`` RGB canvas.

    The background is a random low-saturation grey tint with Gaussian pixel noise (std up to
    ``noise``); each object gets a jittered colour, radius and centre inside the region its
    position names, within the canvas' centred square.
    """
    width, height = size
    side = min(width, height)
    ox, oy = (width - side) / 2, (height - side) / 2
    grey = rng.uniform(95, 190)
    tint = np.clip(grey + rng.uniform(-14, 14, size=3), 0, 255)
    s = _SUPERSAMPLE
    canvas = Image.new("RGB", (width * s, height * s), tuple(int(v) for v in tint))
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        x_lo, x_hi, y_lo, y_hi = _CENTRES[obj.position]
        cx = ox + rng.uniform(x_lo, x_hi) * side
        cy = oy + rng.uniform(y_lo, y_hi) * side
        r = rng.uniform(*_RADIUS) * side
        base = np.asarray(COLOURS[obj.colour], dtype=np.float64)
        fill = tuple(int(v) for v in np.clip(base + rng.uniform(-18, 18, size=3), 0, 255))
        _draw_shape(draw, obj.shape, cx * s, cy * s, r * s, fill)
    canvas = canvas.resize((width, height), Image.Resampling.LANCZOS)
    pixels = np.asarray(canvas, dtype=np.float64)
    pixels = pixels + rng.normal(0.0, rng.uniform(0.0, noise), size=pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def save_image(image: Image.Image, path: Path) -> Path:
    """Save by suffix (``.jpg``, ``.png``, ``.webp``) with fixed quality settings."""
    fmt, options = IMAGE_FORMATS[path.suffix.lower().lstrip(".").replace("jpeg", "jpg")]
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **options)
    return path


def assign_splits(n: int, splits: Mapping[str, float], seed: int) -> list[str]:
    """Exact-count split names for ``n`` items, shuffled deterministically by ``seed``."""
    total = sum(splits.values())
    if n < 0 or total <= 0 or any(f < 0 for f in splits.values()):
        raise ValueError(f"bad splits {dict(splits)} for n={n}")
    names = list(splits)
    counts = [math.floor(n * splits[k] / total) for k in names]
    counts[0] += n - sum(counts)  # the remainder goes to the first split (train)
    order = np.random.default_rng([seed, 1]).permutation(n)
    result = [""] * n
    start = 0
    for name, count in zip(names, counts, strict=True):
        for i in order[start : start + count]:
            result[int(i)] = name
        start += count
    return result


def write_scene_images(
    out_dir: str | Path,
    n: int,
    *,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] = ((64, 64),),
    formats: Sequence[str] = ("jpg", "png", "webp"),
    two_object_fraction: float = 0.25,
    captions_per_image: int = 2,
    splits: Mapping[str, float] = DEFAULT_SPLITS,
) -> list[CaptionedImage]:
    """Render ``n`` captioned scenes as ``out_dir/scene_0000.<fmt>`` ... and describe them.

    Image ``i`` uses its own generator ``default_rng([seed, 0, i])``, so growing ``n`` keeps the
    earlier images; sizes and formats cycle with ``i``. Splits have exact counts.
    """
    unknown = [f for f in formats if f not in IMAGE_FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be some of {', '.join(IMAGE_FORMATS)}, got {list(formats)}")
    out = Path(out_dir)
    split_names = assign_splits(n, splits, seed)
    records = []
    for i in range(n):
        rng = np.random.default_rng([seed, 0, i])
        scene = make_scene(
            rng,
            two_objects=rng.random() < two_object_fraction,
            captions_per_image=captions_per_image,
        )
        image = render_scene(scene, tuple(sizes[i % len(sizes)]), rng)
        path = save_image(image, out / f"scene_{i:04d}.{formats[i % len(formats)]}")
        records.append(CaptionedImage(path, scene.captions, split_names[i], scene.label, scene))
    return records


def _halves(
    size: tuple[int, int], left: tuple[int, ...], right: tuple[int, ...], mode: str = "RGB"
) -> Image.Image:
    width, height = size
    image = Image.new(mode, size, left)
    image.paste(Image.new(mode, (width - width // 2, height), right), (width // 2, 0))
    return image


def write_odd_images(out_dir: str | Path) -> dict[str, Path]:
    """Write awkward image files; returns ``{kind: path}``.

    Kinds: ``grayscale`` (L png, value 128), ``gray16`` (16-bit png, value 40000), ``rgba`` (left
    half opaque red, right half fully transparent), ``palette`` (P-mode gif, red/blue halves),
    ``cmyk`` (CMYK jpg), ``tall`` (40x160 png, red top / blue bottom), ``exif_rotated`` (jpg stored
    sideways with EXIF orientation 6; displayed 60x40, red left half, blue right half), ``bmp``
    (red/blue halves), ``corrupt`` (random bytes named .jpg), ``truncated`` (png cut in half),
    ``empty`` (0 bytes .png), ``not_image`` (text named .png).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    red, blue = (220, 20, 20), (20, 20, 220)
    paths: dict[str, Path] = {}

    def put(kind: str, name: str) -> Path:
        paths[kind] = out / name
        return paths[kind]

    Image.new("L", (48, 32), 128).save(put("grayscale", "grayscale.png"))
    Image.fromarray(np.full((32, 48), 40000, dtype=np.uint16)).save(put("gray16", "gray16.png"))
    _halves((48, 32), (*red, 255), (0, 0, 0, 0), mode="RGBA").save(put("rgba", "rgba.png"))
    _halves((48, 32), red, blue).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(
        put("palette", "palette.gif")
    )
    Image.new("CMYK", (48, 32), (0, 255, 255, 0)).save(put("cmyk", "cmyk.jpg"), quality=95)
    tall = Image.new("RGB", (40, 160), red)
    tall.paste(Image.new("RGB", (40, 80), blue), (0, 80))
    tall.save(put("tall", "tall.png"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    upright = _halves((60, 40), red, blue)
    upright.transpose(Image.Transpose.ROTATE_90).save(
        put("exif_rotated", "exif_rotated.jpg"), quality=95, exif=exif
    )
    _halves((48, 32), red, blue).save(put("bmp", "halves.bmp"))
    put("corrupt", "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(2048))
    full = out / "_full.png"
    _halves((64, 64), red, blue).save(full)
    data = full.read_bytes()
    put("truncated", "truncated.png").write_bytes(data[: len(data) // 2])
    full.unlink()
    put("empty", "empty.png").write_bytes(b"")
    put("not_image", "not_image.png").write_text("this is not an image\n")
    return paths
