"""``mmkit mm sim`` and ``mmkit mm eval`` on awkward images and captions (issue 19).

Every image is made with Pillow here; the checkpoint is ``clip_lite_test`` trained for two steps.
An image that decodes gives exit 0 and, for every text, a finite similarity and a probability
(summing to 1 over the texts); where it has a twin that must look the same to the model (the
first frame of a GIF, a 16-bit image and its 8-bit copy, a transparent palette image and its
flattened copy) the scores are the twin's. An image that does not decode is exit 1 and one
``error:`` line naming the file, without a traceback or a memory blow-up; in ``mm eval`` it is
skipped with its reason. Captions in any script, with emoji, combining marks and control
characters, or 10,000 characters long (cut to the context length), are scored like any other.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.forked_cli import ForkedCli
from tests.media.image_layouts import write_csv_manifest
from tests.media.images import write_scene_images
from tests.test_bad_export import assert_one_error_line
from tests.test_bad_inputs import TIMEOUT, _strict_json

RED, GREEN, BLUE, WHITE = (220, 20, 20), (20, 200, 20), (20, 20, 220), (255, 255, 255)
TEXTS = ("a red square", "a blue circle on the left", "a green triangle")
LONG = ("a red square on the left of a blue circle " * 250)[:10_000]
CAPTIONS = {
    "chinese": "左边有一个红色的正方形",
    "japanese": "左に赤い四角形",
    "arabic": "مربع أحمر على اليسار",
    "hebrew": "ריבוע אדום בצד שמאל",
    "emoji": "🟥 a red square 👍🏽 👩\u200d👩\u200d👧 🇫🇷",
    "combining": "a re\u0301d\u0336 squ\u0308are " + "Z\u0351\u0352\u0353\u0354" * 50,
    "escape": "a \x1b[31mred\x1b[0m square\x1b]0;title\x07",
    "bidi-override": "a red \u202eerauqs\u202c on the left",
    "controls": "bell\x07 backspace\x08 delete\x7f c1\x9b",
    "line-breaks": "two\nlines\r\nand\u2028more\u2029",
    "empty": "",
    "long-10k": LONG,
    "long-prefix": LONG[:300],  # fills the context: the 10,000 characters score as this
    "emoji-10k": "🟥" * 10_000,
}


# -- the images ---------------------------------------------------------------------------------
def _halves(size: tuple[int, int], left: tuple[int, ...], right: tuple[int, ...]) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(Image.new("RGB", (size[0] - size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


def _bilevel_png(path: Path, width: int, height: int) -> Path:
    """A valid black PNG of ``width x height`` one-bit pixels, written row by row (a 20,000 x
    20,000 one is 48 KB on disk and 400 M pixels decoded: a decompression bomb)."""
    row = b"\x00" * (1 + (width + 7) // 8)
    pack = zlib.compressobj(9)
    data = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def write_images(root: Path) -> dict[str, Path]:
    """The awkward images and their twins, by name."""
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def put(name: str) -> Path:
        out[name.split(".")[0]] = root / name
        return root / name

    Image.new("CMYK", (48, 32), (0, 230, 230, 0)).save(put("cmyk.jpg"), quality=95)
    ramp = np.linspace(0, 65535, 48 * 32).astype(np.uint16).reshape(32, 48)
    gray16 = Image.fromarray(ramp)
    assert gray16.mode == "I;16"
    gray16.save(put("gray16.png"))
    Image.fromarray((ramp >> 8).astype(np.uint8)).save(put("gray8.png"))
    palette = Image.new("P", (48, 32), 0)
    palette.putpalette([*RED, *BLUE] + [0] * 762)
    palette.paste(1, (24, 0, 48, 32))
    palette.save(put("palette_alpha.png"), transparency=0)  # the red half is transparent
    _halves((48, 32), WHITE, BLUE).save(put("palette_flat.png"))
    frames = [Image.new("RGB", (48, 32), c) for c in (RED, GREEN, BLUE)]
    frames[0].save(put("animated.gif"), save_all=True, append_images=frames[1:], duration=80)
    frames[0].save(put("first_frame.png"))
    frames[1].save(put("second_frame.png"))
    upright = _halves((60, 40), RED, BLUE)  # displayed: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    sideways.save(put("exif_rotated.jpg"), quality=95, exif=exif)
    upright.save(put("upright.png"))
    sideways.save(put("sideways.png"))
    Image.new("RGB", (1, 1), RED).save(put("one_pixel.png"))
    Image.new("RGB", (60_000, 1), RED).save(put("strip.png"))
    buffer = io.BytesIO()
    Image.effect_noise((200, 200), 60).convert("RGB").save(buffer, "JPEG", quality=90)
    put("truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _bilevel_png(put("bomb.png"), 20_000, 20_000)
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_images(tmp_path_factory.mktemp("bad_images"))


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clip_lite_test`` trained for two steps on 24 rendered scenes (a few seconds)."""
    from mmkit.pipelines import mm

    root = tmp_path_factory.mktemp("clip_run")
    scenes = write_scene_images(root / "scenes", 24, seed=3, sizes=((48, 48),))
    cfg = mm.MMConfig(
        dataset=str(write_csv_manifest(root / "csv", scenes)),
        out=str(root / "run"),
        backbone="clip_lite_test",
        epochs=1,
        batch_size=8,
        max_steps_per_epoch=2,
        device="cpu",
        num_workers=0,
    )
    mm.train(cfg)
    return root / "run"


# -- helpers ------------------------------------------------------------------------------------
def sim(cli: ForkedCli, run: Path, images: list[Path], texts: list[str]) -> list[dict[str, Any]]:
    """``mmkit mm sim IMAGES TEXTS --checkpoint RUN --json``: its entries, one per image, each
    checked: exit 0, nothing on stderr, every text once with a finite similarity in [-1, 1] and
    probabilities that sum to 1."""
    args = ["mm", "sim", *map(str, images), *texts, "--checkpoint", str(run), "--json"]
    proc = cli.run(args, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    result = _strict_json(proc.stdout)
    entries = result if isinstance(result, list) else [result]
    assert [e["image"] for e in entries] == [str(p) for p in images]
    for entry in entries:
        assert sorted(s["text"] for s in entry["scores"]) == sorted(texts)
        for s in entry["scores"]:
            assert math.isfinite(s["similarity"]) and -1.0001 <= s["similarity"] <= 1.0001, s
            assert 0.0 <= s["probability"] <= 1.0, s
        assert sum(s["probability"] for s in entry["scores"]) == pytest.approx(1.0, abs=1e-5)
    return entries


def similarities(entry: dict[str, Any]) -> dict[str, float]:
    return {s["text"]: s["similarity"] for s in entry["scores"]}


def distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    sa, sb = similarities(a), similarities(b)
    return sum(abs(sa[t] - sb[t]) for t in sa)


# -- images that decode -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "twin"),
    [
        ("cmyk", None),
        ("gray16", "gray8"),  # 16-bit gray is its top 8 bits
        ("palette_alpha", "palette_flat"),  # transparency composited onto white
        ("animated", "first_frame"),  # an animation gives its first frame
        ("one_pixel", None),
        ("strip", None),  # 60,000 x 1: the crop alone is resampled
    ],
)
def test_an_image_that_decodes_is_scored(
    name: str, twin: str | None, images: dict[str, Path], clip_run: Path, cli: ForkedCli
) -> None:
    files = [images[name]] + ([images[twin]] if twin else [])
    entries = sim(cli, clip_run, files, list(TEXTS))
    if twin:
        assert similarities(entries[0]) == pytest.approx(similarities(entries[1]), abs=1e-6)


def test_an_animation_is_not_its_later_frames(
    images: dict[str, Path], clip_run: Path, cli: ForkedCli
) -> None:
    animated, first, second = sim(
        cli, clip_run, [images[n] for n in ("animated", "first_frame", "second_frame")], [*TEXTS]
    )
    assert distance(animated, first) < 1e-5 < distance(animated, second)


def test_exif_rotation_is_applied(images: dict[str, Path], clip_run: Path, cli: ForkedCli) -> None:
    """A JPEG stored sideways with EXIF orientation 6 scores like the upright picture, not like
    the pixels as stored."""
    rotated, upright, sideways = sim(
        cli, clip_run, [images[n] for n in ("exif_rotated", "upright", "sideways")], [*TEXTS]
    )
    assert distance(rotated, upright) < distance(rotated, sideways)


def test_a_long_strip_takes_no_more_memory_than_a_pixel(
    images: dict[str, Path], clip_run: Path, cli: ForkedCli
) -> None:
    """60,000 x 1 pixels resized whole to a 64-pixel short side would be 4 M x 64 pixels."""
    sim(cli, clip_run, [images["one_pixel"]], [*TEXTS])
    pixel = cli.peak_rss_mb
    sim(cli, clip_run, [images["strip"]], [*TEXTS])
    assert cli.peak_rss_mb < pixel + 100, (cli.peak_rss_mb, pixel)


# -- images that do not ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated", r"image file is truncated"),
        ("bomb", r"400,000,000 pixels, more than the limit of 89,478,485 \(PIL\.Image\."
                 r"MAX_IMAGE_PIXELS, a guard against decompression bombs\)$"),
    ],
)  # fmt: skip
def test_an_image_that_does_not_decode_is_one_line(
    name: str, reason: str, images: dict[str, Path], clip_run: Path, cli: ForkedCli
) -> None:
    """Exit 1 and one line naming the file, in the memory a 1-pixel image takes."""
    sim(cli, clip_run, [images["one_pixel"]], [*TEXTS])
    pixel = cli.peak_rss_mb
    path = images[name]
    proc = cli.run(["mm", "sim", str(path), *TEXTS, "--checkpoint", str(clip_run), "--json"])
    assert_one_error_line(proc, rf"^error: cannot decode {re.escape(str(path))}: {reason}")
    assert cli.peak_rss_mb < pixel + 100, (cli.peak_rss_mb, pixel)


# -- captions -------------------------------------------------------------------------------------
def test_captions_in_any_script_and_any_length_are_scored(
    images: dict[str, Path], clip_run: Path, cli: ForkedCli
) -> None:
    """Every caption comes back as given, scored; 10,000 characters are cut to the context
    length (they score as their first 300 characters do), never refused."""
    texts = list(CAPTIONS.values())
    [entry] = sim(cli, clip_run, [images["first_frame"]], texts)
    scores = similarities(entry)
    assert scores[CAPTIONS["long-10k"]] == pytest.approx(scores[CAPTIONS["long-prefix"]], abs=1e-6)


def test_captions_never_break_or_drive_the_human_output(
    images: dict[str, Path], clip_run: Path, cli: ForkedCli
) -> None:
    """Without ``--json``: the image's line and one line per caption; escapes, bidirectional
    overrides and line breaks in a caption are shown escaped, not sent to the terminal."""
    texts = list(CAPTIONS.values())
    args = ["mm", "sim", str(images["first_frame"]), *texts, "--checkpoint", str(clip_run)]
    proc = cli.run(args, timeout=TIMEOUT)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 + len(texts), lines
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", proc.stdout)
    assert r"a \x1b[31mred\x1b[0m square" in proc.stdout and r"a red \u202eerauqs" in proc.stdout


def test_mm_eval_skips_what_does_not_decode_and_scores_the_rest(
    images: dict[str, Path], clip_run: Path, cli: ForkedCli, tmp_path: Path
) -> None:
    """A JSONL manifest pairing every awkward image with an awkward caption (a NUL among them,
    which no command line can carry): the two images that do not decode are skipped with their
    reasons, the others are scored, every metric finite."""
    good = ["cmyk", "gray16", "palette_alpha", "animated", "exif_rotated", "one_pixel", "strip"]
    captions = [c for c in CAPTIONS.values() if c] + ["a NUL\x00inside"]
    rows = [{"image": images[name].name, "caption": captions[i]} for i, name in enumerate(good)]
    rows += [{"image": images[name].name, "caption": caption}
             for name, caption in (("truncated", "noise"), ("bomb", "black"))]  # fmt: skip
    rows += [{"image": images["strip"].name, "caption": c} for c in captions[len(good) :]]
    manifest = images["cmyk"].parent / "awkward.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = ["mm", "eval", "--checkpoint", str(clip_run), "--dataset", str(manifest), "--json"]
    proc = cli.run(args, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    report = _strict_json(proc.stdout)
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    assert sorted(skipped) == ["bomb.png", "truncated.jpg"], skipped
    assert re.match(r"image file is truncated", skipped["truncated.jpg"])
    assert re.match(r"400,000,000 pixels, more than the limit", skipped["bomb.png"])
    assert (report["num_images"], report["num_pairs"]) == (len(good), len(captions))
    for direction in ("image_to_text", "text_to_image"):
        assert all(math.isfinite(v) for v in report[direction].values()), report
    notes = proc.stderr.splitlines()
    assert len(notes) == 3 and notes[-1].startswith("the dataset has no splits"), proc.stderr
