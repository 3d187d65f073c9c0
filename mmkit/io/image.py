"""Image decoding with Pillow: any common format to RGB, EXIF orientation honoured.

:func:`load_image` returns a ``PIL.Image.Image`` in RGB; :func:`load_image_array` returns the
``uint8 [S, S, 3]`` array the prepared store keeps (short side resized to ``S``, centre crop).
Every decoding failure becomes :class:`mmkit.errors.MediaError` with the message
``cannot decode <path>: <reason>``.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from mmkit.errors import MediaError

ImageSource = str | os.PathLike[str] | bytes | bytearray | BinaryIO

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)
"""File suffixes (lower case, with the dot) treated as images when scanning folders."""

_BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white


def _source_name(source: ImageSource) -> str:
    if isinstance(source, bytes | bytearray):
        return "<bytes>"
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
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


def load_image(source: ImageSource) -> Image.Image:
    """Decode an image file, bytes or binary stream to an RGB ``PIL.Image.Image``.

    EXIF orientation is applied (``ImageOps.exif_transpose``), so a photo stored sideways comes
    back the way it is displayed. Grayscale, palette, CMYK and 16-bit images are converted to
    RGB; transparent pixels are composited onto white. Animated images give their first frame.

    Raises:
        MediaError: ``cannot decode <path>: <reason>`` for a missing, truncated or unknown file.
    """
    name = _source_name(source)
    try:
        if isinstance(source, bytes | bytearray):
            stream: BinaryIO = io.BytesIO(bytes(source))
        elif isinstance(source, str | os.PathLike):
            stream = open(source, "rb")  # noqa: SIM115 - closed below
        else:
            stream = source
        try:
            with Image.open(stream) as opened:
                opened.load()
                oriented = ImageOps.exif_transpose(opened)
                image = _to_rgb(oriented)
                image.load()
        finally:
            if isinstance(source, str | os.PathLike):
                stream.close()
    except FileNotFoundError:
        raise MediaError(f"cannot decode {name}: no such file") from None
    except IsADirectoryError:
        raise MediaError(f"cannot decode {name}: is a directory") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        reason = str(exc) or type(exc).__name__
        raise MediaError(f"cannot decode {name}: {reason}") from exc
    return image


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` and crop the centre square (antialiased, bicubic)."""
    if size <= 0:
        raise ValueError(f"size ({size}) must be > 0")
    return ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))


def load_image_array(source: ImageSource, size: int) -> np.ndarray:
    """Decode ``source`` to a ``uint8 [size, size, 3]`` array: short-side resize + centre crop.

    This is the form the prepared store keeps; random crops for training happen later on the
    device (:mod:`mmkit.preprocess.image`).

    Raises:
        MediaError: when the image cannot be decoded (see :func:`load_image`).
    """
    image = center_crop_resize(load_image(source), size)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
