"""Rendered caption scenes say exactly what they show; every layout writer is readable."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from mmkit.io.image import load_image, load_image_array
from tests.media.image_layouts import COCO_SPLITS
from tests.media.images import (
    COLOURS,
    POSITION_PHRASES,
    SHAPES,
    assign_splits,
    make_scene,
    write_odd_images,
    write_scene_images,
)

_NAMES = list(COLOURS)
_REFERENCE = np.array([COLOURS[n] for n in _NAMES], dtype=float)


def _colour_masks(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Saturated pixels near each reference colour (the grey background is never saturated)."""
    px = pixels.astype(float)
    saturation = px.max(-1) - px.min(-1)
    dist = np.linalg.norm(px[:, :, None, :] - _REFERENCE[None, None], axis=-1)
    nearest, closeness = dist.argmin(-1), dist.min(-1)
    masks = {}
    for i, name in enumerate(_NAMES):
        mask = (nearest == i) & (closeness < 70) & (saturation > 90)
        if mask.sum() > 8:
            masks[name] = mask
    return masks


def _shape(mask: np.ndarray) -> str:
    """Square: all four inner bounding-box corners filled; triangle: the two bottom ones, and
    the top half lighter than the bottom; circle vs cross: fraction of the box filled."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    corners = [
        mask[y0 + 1, x0 + 1],
        mask[y0 + 1, x1 - 1],
        mask[y1 - 1, x0 + 1],
        mask[y1 - 1, x1 - 1],
    ]
    mid = (y0 + y1) / 2
    if all(corners):
        return "square"
    if sum(corners) == 2 and (ys < mid).sum() < 0.68 * (ys > mid).sum():
        return "triangle"
    fill = mask.sum() / ((y1 - y0 + 1) * (x1 - x0 + 1))
    return "circle" if fill > 0.655 else "cross"


def _position(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean() / mask.shape[1], ys.mean() / mask.shape[0]
    horizontal = 0.35 < cy < 0.65
    vertical = 0.35 < cx < 0.65
    if horizontal and cx < 0.36:
        return "left"
    if horizontal and cx > 0.64:
        return "right"
    if vertical and cy < 0.36:
        return "top"
    if vertical and cy > 0.64:
        return "bottom"
    assert 0.4 < cx < 0.6 and 0.4 < cy < 0.6, (cx, cy)
    return "middle"


def test_captions_describe_the_pixels_after_centre_crop(scene_set) -> None:
    """Recover shape, colour and position of every object from the stored 64x64 crop."""
    two_objects = 0
    for record in scene_set.records:
        masks = _colour_masks(load_image_array(record.path, 64))
        assert set(masks) == {o.colour for o in record.scene.objects}, record.path.name
        seen = {(_shape(m), c, _position(m)) for c, m in masks.items()}
        shapes = {s for s, _, _ in seen}
        assert shapes == {record.label}, (record.path.name, seen)
        canonical = " and ".join(f"a {c} {s} {POSITION_PHRASES[p]}" for s, c, p in seen)
        if len(seen) == 2:
            two_objects += 1
            alternative = " and ".join(reversed(canonical.split(" and ")))
            assert record.captions[0] in (canonical, alternative), (record.captions, seen)
        else:
            assert record.captions[0] == canonical
        for caption in record.captions:
            assert record.label in caption
            for _, colour, position in seen:
                assert colour in caption and POSITION_PHRASES[position] in caption
    assert 40 < two_objects < 120
    assert {r.label for r in scene_set.records} == set(SHAPES)


def test_scene_set_is_deterministic_and_varied(scene_set, tmp_path: Path) -> None:
    again = write_scene_images(
        tmp_path / "a", 6, seed=7, sizes=((64, 64), (64, 64), (64, 64), (96, 64), (64, 80))
    )
    for new, old in zip(again, scene_set.records, strict=False):
        assert new.captions == old.captions and new.scene == old.scene
        assert new.path.read_bytes() == old.path.read_bytes()
    other = write_scene_images(tmp_path / "b", 6, seed=8)
    assert [r.captions for r in other] != [r.captions for r in again]
    sizes = {load_image(r.path).size for r in scene_set.records}
    assert sizes == {(64, 64), (96, 64), (64, 80)}
    counts = {s: len(scene_set.split(s)) for s in ("train", "validation", "test")}
    assert counts == {"train": 240, "validation": 32, "test": 48}
    assert all(len(r.captions) == 2 and len(set(r.captions)) == 2 for r in scene_set.records)


def test_scene_helpers_validate_and_split_exactly() -> None:
    splits = assign_splits(10, {"train": 0.5, "test": 0.5}, seed=0)
    assert sorted(splits) == ["test"] * 5 + ["train"] * 5
    assert splits == assign_splits(10, {"train": 0.5, "test": 0.5}, seed=0)
    with pytest.raises(ValueError, match=r"captions_per_image \(5\) must be in 1..4"):
        make_scene(np.random.default_rng(0), captions_per_image=5)
    with pytest.raises(ValueError, match="formats must be some of"):
        write_scene_images("/nonexistent", 1, formats=("gif",))


def _read_manifest_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _expected_pairs(scene_set) -> set[tuple[str, str, str]]:
    return {(r.path.name, c, r.split) for r in scene_set.records for c in r.captions}


@pytest.mark.parametrize("layout", ["csv", "jsonl", "csv_label"])
def test_manifests(scene_set, layout: str) -> None:
    path = scene_set.layouts[layout]
    rows = _read_manifest_rows(path)
    assert len(rows) == sum(len(r.captions) for r in scene_set.records)
    pairs = set()
    for row in rows:
        image = path.parent / row["image"]
        assert not Path(row["image"]).is_absolute() and image.is_file()
        pairs.add((image.name, row["caption"], row["split"]))
    assert pairs == _expected_pairs(scene_set)
    if layout == "csv_label":
        labels = {Path(row["image"]).name: row["label"] for row in rows}
        assert all(labels[r.path.name] == r.label for r in scene_set.records)


def test_caption_folder(scene_set) -> None:
    root = scene_set.layouts["caption_folder"]
    pairs = set()
    for text in root.glob("*/*.txt"):
        images = [p for p in text.parent.glob(text.stem + ".*") if p.suffix != ".txt"]
        assert len(images) == 1
        pairs |= {
            (images[0].name, line, text.parent.name)
            for line in text.read_text(encoding="utf-8").splitlines()
        }
    assert pairs == _expected_pairs(scene_set)


def test_flickr8k(scene_set) -> None:
    root = scene_set.layouts["flickr8k"]
    split_of = {}
    for split, file_name in (
        ("train", "Flickr_8k.trainImages.txt"),
        ("validation", "Flickr_8k.devImages.txt"),
        ("test", "Flickr_8k.testImages.txt"),
    ):
        for name in (root / file_name).read_text().split():
            split_of[name] = split
    pairs = set()
    for line in (root / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t")
        name, index = key.rsplit("#", 1)
        assert index.isdigit() and (root / "Flicker8k_Dataset" / name).is_file()
        pairs.add((name, caption, split_of[name]))
    assert pairs == _expected_pairs(scene_set)


def test_coco_captions(scene_set) -> None:
    root = scene_set.layouts["coco"]
    pairs = set()
    for split, coco_split in COCO_SPLITS.items():
        doc = json.loads((root / "annotations" / f"captions_{coco_split}.json").read_text())
        files = {image["id"]: image["file_name"] for image in doc["images"]}
        assert len(files) == len(scene_set.split(split))
        for annotation in doc["annotations"]:
            name = files[annotation["image_id"]]
            assert (root / coco_split / name).is_file()
            pairs.add((name, annotation["caption"], split))
    assert pairs == _expected_pairs(scene_set)


@pytest.mark.parametrize("layout", ["hf_parquet", "hf_parquet_list", "hf_disk", "hf_disk_str"])
def test_hf_layouts_read_back_with_datasets(scene_set, layout: str) -> None:
    root = scene_set.layouts[layout]
    if layout.startswith("hf_disk"):
        dd = datasets.load_from_disk(str(root))
    else:
        dd = datasets.load_dataset(str(root))
    assert set(dd) == {"train", "validation", "test"}
    text_column = "captions" if layout in ("hf_parquet_list", "hf_disk") else "caption"
    features = dd["train"].features
    assert isinstance(features["image"], datasets.Image) and not features["image"].decode
    assert features["label"].names == list(SHAPES)
    by_name = {r.path.name: r for r in scene_set.records}
    pairs = set()
    for split, ds in dd.items():
        assert set(ds.column_names) == {"image", text_column, "label"}
        for row in ds:
            record = by_name[row["image"]["path"]]
            assert row["image"]["bytes"] == record.path.read_bytes()
            assert features["label"].int2str(row["label"]) == record.label
            texts = row[text_column]
            if text_column == "captions":
                assert isinstance(texts, list) and tuple(texts) == record.captions
            else:
                texts = [texts]
            pairs |= {(record.path.name, text, split) for text in texts}
    assert pairs == _expected_pairs(scene_set)
    first = dd["test"][0]["image"]["bytes"]
    assert load_image(first).mode == "RGB"


def test_odd_images_writer_covers_every_kind(tmp_path: Path) -> None:
    paths = write_odd_images(tmp_path)
    assert set(paths) == {
        "grayscale",
        "gray16",
        "rgba",
        "palette",
        "cmyk",
        "tall",
        "exif_rotated",
        "bmp",
        "corrupt",
        "truncated",
        "empty",
        "not_image",
    }
    assert all(p.is_file() and p.parent == tmp_path for p in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
