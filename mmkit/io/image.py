"""Image decoding with Pillow: any common format to RGB, EXIF orientation honoured.


:func:`load_image` returns a ``PIL.Image.Image`` in RGB; :func:`load_image_array` returns the
``uint8 [S, S, 3]`` array the prepared store keeps, made by :func:`resize_image` the way
open_clip's eval transform (``open_clip.image_transform_v2(cfg, is_train=False)``) makes it
before ``ToTensor``: ``resize_mode`` ``shortest`` (short side to ``S``, centre crop; the
default), ``squash`` (both sides to ``S``, aspect ratio lost) or ``longest`` (long side to
``S``, centred on a ``fill_color`` square), with ``bicubic`` or ``bilinear`` resampling.
Every decoding failure becomes :class:`mmkit.errors.MediaError` with the message
``cannot decode <path>: <reason>``.
"""

from __future__ import annotations

import io
import os
import re
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmkit.errors import MediaError, UserInputError
from mmkit.io.files import file_problem, os_reason, short_path

ImageSource = str | os.PathLike[str] | bytes | bytearray | BinaryIO

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)
"""File suffixes (lower case, with the dot) treated as images when scanning folders."""

RESIZE_MODES: tuple[str, ...] = ("shortest", "squash", "longest")
"""How :func:`resize_image` fits an image into ``S x S`` (open_clip's ``resize_mode``)."""
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}
"""Resampling filters by open_clip's ``interpolation`` name."""
RESIZE_DEFAULTS: dict[str, str | int] = {
    "resize_mode": "shortest",
    "interpolation": "bicubic",
    "fill_color": 0,
}
""":func:`load_image_array`'s fitting keywords when nothing says otherwise (and for stores and
checkpoints made before they were recorded)."""

MAX_ASPECT = 16
"""Beyond this aspect ratio, ``shortest`` fitting resamples the centre crop's part of the image
alone (see :func:`resize_image`)."""

_BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white


def _source_name(source: ImageSource) -> str:
    if isinstance(source, bytes | bytearray):
        return "<bytes>"
    if isinstance(source, str | os.PathLike):
        return short_path(source)
    return str(getattr(source, "name", "<stream>"))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; alpha is composited onto white, 16-bit gray scaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(image, dtype=np.int64)
        gray = (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=-1))
    if image.mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=-1))
    has_alpha = image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _too_large(pixels: int) -> str:
    return (
        f"{pixels:,} pixels, more than the limit of {Image.MAX_IMAGE_PIXELS:,} "
        "(PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs)"
    )


def _check_size(image: Image.Image, name: str) -> None:
    """Refuse an image of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels before it is decoded.
    Pillow itself only warns up to twice that many and decodes them (gigabytes for a file of a
    few kilobytes: a decompression bomb); raise the limit in Python to read larger images."""
    width, height = image.size
    if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
        raise MediaError.cannot_decode(name, f"{width} x {height} = {_too_large(width * height)}")


def load_image(source: ImageSource) -> Image.Image:
    """Decode an image file, bytes or binary stream to an RGB ``PIL.Image.Image``.

    EXIF orientation is applied (``ImageOps.exif_transpose``), so a photo stored sideways comes
    back the way it is displayed. Grayscale, palette, CMYK and 16-bit images are converted to
    RGB; transparent pixels are composited onto white. Animated images give their first frame.
    A truncated file is refused (Pillow's ``LOAD_TRUNCATED_IMAGES`` stays off: half an image is
    not the image), as is one of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels, before decoding.

    Raises:
        MediaError: ``cannot decode <path>: <reason>`` for a missing, truncated or unknown file.
    """
    name = _source_name(source)
    if isinstance(source, str | os.PathLike):
        problem = file_problem(source)  # opening a FIFO would block forever
        if problem is None and os.path.getsize(source) == 0:
            problem = "empty file (0 bytes)"
        if problem is not None:
            raise MediaError.cannot_decode(name, problem)
    elif isinstance(source, bytes | bytearray) and not source:
        raise MediaError.cannot_decode(name, "empty (0 bytes)")
    try:
        if isinstance(source, bytes | bytearray):
            stream: BinaryIO = io.BytesIO(bytes(source))
        elif isinstance(source, str | os.PathLike):
            stream = open(source, "rb")  # noqa: SIM115 - closed below
        else:
            stream = source
        try:
            with Image.open(stream) as opened:
                _check_size(opened, name)
                opened.load()
                oriented = ImageOps.exif_transpose(opened)
                image = _to_rgb(oriented)
                image.load()
        finally:
            if isinstance(source, str | os.PathLike):
                stream.close()
    except UnidentifiedImageError as exc:  # its message repeats the whole file name
        raise MediaError.cannot_decode(name, "not an image format Pillow reads") from exc
    except OSError as exc:
        if exc.errno is not None:  # from the file system, not from a decoder
            raise MediaError.cannot_decode(name, os_reason(exc)) from None
        raise MediaError.cannot_decode(name, str(exc or type(exc).__name__)) from exc
    except Image.DecompressionBombError as exc:  # Pillow's, at twice the limit
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        reason = _too_large(int(pixels[1])) if pixels else str(exc)
        raise MediaError.cannot_decode(name, reason) from exc
    except (ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        raise MediaError.cannot_decode(name, reason) from exc
    return image


def check_resize(resize_mode: str, interpolation: str, fill_color: int) -> None:
    """:class:`UserInputError` unless the three are a valid :func:`resize_image` setting."""
    if resize_mode not in RESIZE_MODES:
        raise UserInputError(
            f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {resize_mode!r}"
        )
    if interpolation not in INTERPOLATIONS:
        raise UserInputError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
        )
    if isinstance(fill_color, bool) or not isinstance(fill_color, int) or not 0 <= fill_color < 256:
        raise UserInputError(f"fill_color must be an integer in [0, 255], got {fill_color!r}")


def resize_image(
    image: Image.Image,
    size: int,
    *,
    resize_mode: str = "shortest",
    interpolation: str = "bicubic",
    fill_color: int = 0,
) -> Image.Image:
    """Fit ``image`` into ``size x size`` exactly as open_clip's eval transform does (torchvision's
    ``Resize`` + ``CenterCrop``, ``Resize((S, S))``, or ``ResizeKeepRatio(longest=1)`` +
    ``CenterCropOrPad``, on a PIL image: antialiased Pillow resampling).

    In ``shortest`` mode an image more than :data:`MAX_ASPECT` times longer than wide (or wide
    than high) has only the part that the centre crop keeps resampled (Pillow's ``box``):
    resizing it whole would take memory in proportion to its length (a 1 x 60,000 strip at
    224 is 3 G pixels). The crop is the same, or, where the strip is enlarged, differs by
    less than half a grey level on average.

    Raises:
        ValueError: ``size`` is not positive.
        UserInputError: an unknown ``resize_mode`` / ``interpolation`` or a bad ``fill_color``.
    """
    if size <= 0:
        raise ValueError(f"size ({size}) must be > 0")
    check_resize(resize_mode, interpolation, fill_color)
    method = INTERPOLATIONS[interpolation]
    width, height = image.size
    if resize_mode == "squash":
        target = (size, size)
    elif resize_mode == "shortest":  # the short side to size, the long one truncated as torchvision
        short, long = min(width, height), max(width, height)
        new_long = int(size * long / short)
        target = (size, new_long) if width <= height else (new_long, size)
        if new_long > MAX_ASPECT * size:  # the crop alone, straight from the source pixels
            top, left = round((target[1] - size) / 2.0), round((target[0] - size) / 2.0)
            sx, sy = width / target[0], height / target[1]
            box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
            return image.resize((size, size), method, box=box)
    else:  # longest: the long side to size, rounded as open_clip's ResizeKeepRatio
        ratio = max(width, height) / size
        target = (max(1, round(width / ratio)), max(1, round(height / ratio)))
    if target != image.size:
        image = image.resize(target, method)
    width, height = image.size
    if width < size or height < size:  # only in longest mode: centre on a fill_color square
        left, top = (size - width) // 2, (size - height) // 2
        canvas = Image.new("RGB", (max(width, size), max(height, size)), (fill_color,) * 3)
        canvas.paste(image, (max(left, 0), max(top, 0)))
        image, width, height = canvas, canvas.width, canvas.height
    top, left = round((height - size) / 2.0), round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def load_image_array(
    source: ImageSource,
    size: int,
    *,
    resize_mode: str = "shortest",
    interpolation: str = "bicubic",
    fill_color: int = 0,
) -> np.ndarray:
    """Decode ``source`` to a ``uint8 [size, size, 3]`` array fitted by :func:`resize_image`
    (default: short-side resize + centre crop, bicubic).

    This is the form the prepared store keeps; random crops for training happen later on the
    device (:mod:`mmkit.preprocess.image`).

    Raises:
        MediaError: when the image cannot be decoded (see :func:`load_image`).
    """
    image = resize_image(
        load_image(source),
        size,
        resize_mode=resize_mode,
        interpolation=interpolation,
        fill_color=fill_color,
    )
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
