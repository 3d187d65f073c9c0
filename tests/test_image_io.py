"""mmkit.io.image: every format to RGB, EXIF orientation, errors as MediaError."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmkit.errors import MediaError
from mmkit.io.image import IMAGE_EXTENSIONS, load_image, load_image_array, resize_image

RED, BLUE = np.array([220, 20, 20]), np.array([20, 20, 220])


def _close(pixel: np.ndarray, colour: np.ndarray, tol: int = 30) -> bool:
    return bool(np.abs(pixel.astype(int) - colour).max() <= tol)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp"])
def test_formats_decode_to_rgb(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"x{suffix}"
    Image.new("RGB", (30, 20), (200, 40, 40)).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (30, 20)
    assert _close(np.asarray(image)[10, 15], np.array([200, 40, 40]), tol=8)
    assert suffix in IMAGE_EXTENSIONS


def test_scene_formats(scene_set) -> None:
    suffixes = {r.path.suffix for r in scene_set.records}
    assert suffixes == {".jpg", ".png", ".webp"}
    for record in scene_set.records[:6]:
        image = load_image(record.path)
        assert image.mode == "RGB"
        assert image.size == Image.open(record.path).size


def test_bytes_and_stream_sources(odd_images) -> None:
    data = odd_images["tall"].read_bytes()
    from_bytes = np.asarray(load_image(data))
    from_stream = np.asarray(load_image(io.BytesIO(data)))
    from_path = np.asarray(load_image(str(odd_images["tall"])))
    assert from_bytes.shape == (160, 40, 3)
    np.testing.assert_array_equal(from_bytes, from_stream)
    np.testing.assert_array_equal(from_bytes, from_path)
    assert _close(from_bytes[10, 20], RED) and _close(from_bytes[150, 20], BLUE)


def test_grayscale_and_16_bit_become_gray_rgb(odd_images) -> None:
    gray = np.asarray(load_image(odd_images["grayscale"]))
    assert gray.shape == (32, 48, 3) and (gray == 128).all()
    wide = np.asarray(load_image(odd_images["gray16"]))
    assert wide.shape == (32, 48, 3) and (wide == 40000 >> 8).all()


def test_rgba_is_composited_on_white(odd_images) -> None:
    image = np.asarray(load_image(odd_images["rgba"]))
    assert image.shape == (32, 48, 3)
    assert _close(image[16, 5], RED, tol=0)
    assert (image[16, 40] == 255).all()


@pytest.mark.parametrize("kind", ["palette", "bmp", "cmyk"])
def test_palette_bmp_cmyk(odd_images, kind: str) -> None:
    image = np.asarray(load_image(odd_images[kind]))
    assert image.shape == (32, 48, 3)
    assert _close(image[16, 5], RED, tol=40)
    if kind != "cmyk":
        assert _close(image[16, 40], BLUE, tol=40)


def test_exif_rotation_is_honoured(odd_images) -> None:
    raw = Image.open(odd_images["exif_rotated"])
    assert raw.size == (40, 60)  # stored sideways
    image = np.asarray(load_image(odd_images["exif_rotated"]))
    assert image.shape == (40, 60, 3)  # displayed 60 wide, 40 high
    assert _close(image[20, 8], RED) and _close(image[20, 52], BLUE)


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "empty", "not_image"])
def test_undecodable_files_raise_media_error(odd_images, kind: str) -> None:
    path = odd_images[kind]
    with pytest.raises(MediaError, match=rf"^cannot decode {path}: .+"):
        load_image(path)
    with pytest.raises(MediaError):
        load_image_array(path, 16)


def test_missing_file_and_bad_bytes(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(MediaError, match=rf"^cannot decode {missing}: no such file$"):
        load_image(missing)
    with pytest.raises(MediaError, match=r"^cannot decode <bytes>: "):
        load_image(b"\x00\x01 not an image")
    with pytest.raises(MediaError, match=r"^cannot decode .*: is a directory$"):
        load_image(tmp_path)


def test_load_image_array_resizes_short_side_and_centre_crops(odd_images) -> None:
    array = load_image_array(odd_images["tall"], 20)  # 40x160: red top half, blue bottom half
    assert array.shape == (20, 20, 3) and array.dtype == np.uint8
    # the centre crop spans rows 60..100 of the original: red on top, blue below
    assert _close(array[2, 10], RED) and _close(array[17, 10], BLUE)
    wide = load_image_array(odd_images["exif_rotated"], 16)  # orientation applied first
    assert wide.shape == (16, 16, 3)
    assert _close(wide[8, 1], RED) and _close(wide[8, 14], BLUE)


def test_resize_image_rejects_bad_size(odd_images) -> None:
    with pytest.raises(ValueError, match=r"size \(0\) must be > 0"):
        resize_image(load_image(odd_images["tall"]), 0)



def _strip(width: int, height: int) -> Image.Image:
    """A grey ramp along the long side (black at one end, white at the other)."""
    ramp = np.linspace(0, 255, max(width, height)).astype(np.uint8)
    grey = np.broadcast_to(ramp[None, :] if width > height else ramp[:, None], (height, width))
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))


@pytest.mark.parametrize(("width", "height"), [(60_000, 3), (3, 60_000), (1, 90_000)])
def test_a_long_strip_is_cropped_before_it_is_enlarged(width: int, height: int) -> None:
    """Resized whole, a 3 x 60,000 strip at 224 would be 224 x 4.5 M pixels (3 GB): only the
    part the centre crop keeps is resampled, and it is the middle of the ramp."""
    out = np.asarray(resize_image(_strip(width, height), 224)).astype(int)
    assert out.shape == (224, 224, 3)
    assert np.abs(out - 127).max() <= 1  # the middle of a 0..255 ramp


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_a_cropped_strip_is_the_whole_resize_cropped(
    interpolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the whole resize is affordable, the crop is the same as its centre crop (within
    2 grey levels on this ramp)."""
    import mmkit.io.image as image_io

    strip = _strip(3, 2000)
    cropped = np.asarray(resize_image(strip, 64, interpolation=interpolation)).astype(int)
    monkeypatch.setattr(image_io, "MAX_ASPECT", 10**9)
    whole = np.asarray(resize_image(strip, 64, interpolation=interpolation)).astype(int)
    assert np.abs(cropped - whole).max() <= 2
