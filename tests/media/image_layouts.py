"""Write captioned images (:class:`tests.media.images.CaptionedImage`) in every mm source layout.

Each writer copies the image files under ``root`` and returns the path to give ``--dataset``:

==================  ===============================================================================
writer              layout
==================  ===============================================================================
manifest (csv)      ``root/captions.csv``: ``image,caption[,split][,label]``, one row per caption,
                    ``image`` relative to the manifest (``images/scene_0000.jpg``)
manifest (jsonl)    ``root/captions.jsonl``: one ``{"image", "caption"[, "split"][, "label"]}`` per
                    line
caption folder      ``root/<split>/scene_0000.jpg`` + ``scene_0000.txt`` (one caption per line);
                    without split folders everything sits in ``root``
Flickr8k            ``root/Flickr8k.token.txt`` (``name.jpg#k<TAB>caption``),
                    ``root/Flickr_8k.{train,dev,test}Images.txt``, images in
                    ``root/Flicker8k_Dataset/`` (the official archive's spelling)
COCO captions       ``root/annotations/captions_<coco>.json`` with ``images: [{id, file_name}]``,
                    ``annotations: [{id, image_id, caption}]``; images in ``root/<coco>/``, where
                    ``<coco>`` is ``train2017``/``val2017``/``test2017`` for train/validation/test
HF parquet          ``root/data/<split>-00000-of-00001.parquet``
HF save_to_disk     ``DatasetDict.save_to_disk(root)``
==================  ===============================================================================

HF layouts hold an ``image`` column of ``datasets.Image(decode=False)`` (``{"bytes", "path"}``), a
text column holding one string per row (images repeated) or a list of strings per image, and
optionally a ``label`` ``ClassLabel`` over :data:`tests.media.images.SHAPES`.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.media.images import SHAPES, CaptionedImage

FLICKR_SPLIT_FILES: dict[str, str] = {
    "train": "Flickr_8k.trainImages.txt",
    "validation": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
COCO_SPLITS: dict[str, str] = {"train": "train2017", "validation": "val2017", "test": "test2017"}


def _copy(record: CaptionedImage, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(record.path, dest)
    return dest


def _manifest_rows(
    records: Sequence[CaptionedImage],
    root: Path,
    image_dir: str,
    with_split: bool,
    with_label: bool,
) -> list[dict[str, str]]:
    rows = []
    for record in records:
        rel = f"{image_dir}/{record.path.name}" if image_dir else record.path.name
        _copy(record, root / rel)
        for caption in record.captions:
            row = {"image": rel, "caption": caption}
            if with_split:
                row["split"] = record.split
            if with_label:
                row["label"] = record.label
            rows.append(row)
    return rows


def write_csv_manifest(
    root: str | Path,
    records: Sequence[CaptionedImage],
    *,
    name: str = "captions.csv",
    image_dir: str = "images",
    with_split: bool = True,
    with_label: bool = False,
) -> Path:
    """CSV manifest ``image,caption[,split][,label]`` (one row per caption); returns its path."""
    root = Path(root)
    rows = _manifest_rows(records, root, image_dir, with_split, with_label)
    fields = ["image", "caption"] + ["split"] * with_split + ["label"] * with_label
    path = root / name
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl_manifest(
    root: str | Path,
    records: Sequence[CaptionedImage],
    *,
    name: str = "captions.jsonl",
    image_dir: str = "images",
    with_split: bool = True,
    with_label: bool = False,
) -> Path:
    """JSONL manifest, one ``{"image", "caption"[, "split"][, "label"]}`` per line; its path."""
    root = Path(root)
    rows = _manifest_rows(records, root, image_dir, with_split, with_label)
    path = root / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_caption_folder(
    root: str | Path, records: Sequence[CaptionedImage], *, split_dirs: bool = True
) -> Path:
    """Images with same-name ``.txt`` files holding one caption per line; returns ``root``."""
    root = Path(root)
    for record in records:
        folder = root / record.split if split_dirs else root
        image = _copy(record, folder / record.path.name)
        image.with_suffix(".txt").write_text("\n".join(record.captions) + "\n", encoding="utf-8")
    return root


def write_flickr8k(
    root: str | Path, records: Sequence[CaptionedImage], *, image_dir: str = "Flicker8k_Dataset"
) -> Path:
    """Flickr8k token file + split lists (train/validation/test -> train/dev/test); ``root``."""
    root = Path(root)
    lines: list[str] = []
    split_lists: dict[str, list[str]] = {name: [] for name in FLICKR_SPLIT_FILES.values()}
    for record in records:
        if record.split not in FLICKR_SPLIT_FILES:
            raise ValueError(
                f"Flickr8k has splits {', '.join(FLICKR_SPLIT_FILES)}, got {record.split!r}"
            )
        name = record.path.name
        _copy(record, root / image_dir / name)
        lines.extend(f"{name}#{k}\t{caption}" for k, caption in enumerate(record.captions))
        split_lists[FLICKR_SPLIT_FILES[record.split]].append(name)
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for file_name, names in split_lists.items():
        (root / file_name).write_text("".join(n + "\n" for n in names), encoding="utf-8")
    return root


def write_coco_captions(
    root: str | Path,
    records: Sequence[CaptionedImage],
    *,
    split_names: Mapping[str, str] = COCO_SPLITS,
) -> Path:
    """COCO caption JSON per split (``annotations/captions_<coco>.json``); returns ``root``."""
    root = Path(root)
    per_split: dict[str, dict[str, list[dict[str, Any]]]] = {}
    annotation_id = 0
    for image_id, record in enumerate(records, start=1):
        if record.split not in split_names:
            raise ValueError(
                f"no COCO split name for {record.split!r}; known: {', '.join(split_names)}"
            )
        coco_split = split_names[record.split]
        doc = per_split.setdefault(coco_split, {"images": [], "annotations": []})
        _copy(record, root / coco_split / record.path.name)
        doc["images"].append({"id": image_id, "file_name": record.path.name})
        for caption in record.captions:
            annotation_id += 1
            doc["annotations"].append(
                {"id": annotation_id, "image_id": image_id, "caption": caption}
            )
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for coco_split, doc in per_split.items():
        path = root / "annotations" / f"captions_{coco_split}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
    return root


def hf_dataset_dict(
    records: Sequence[CaptionedImage],
    *,
    image_column: str = "image",
    text_column: str = "caption",
    captions_as_list: bool = False,
    with_label: bool = True,
) -> Any:
    """A ``datasets.DatasetDict`` (one entry per split) in the HF form described above."""
    import datasets

    text_feature = (
        datasets.List(datasets.Value("string")) if captions_as_list else datasets.Value("string")
    )
    features = {image_column: datasets.Image(decode=False), text_column: text_feature}
    if with_label:
        features["label"] = datasets.ClassLabel(names=list(SHAPES))
    columns: dict[str, dict[str, list[Any]]] = {}
    for record in records:
        cols = columns.setdefault(record.split, {name: [] for name in features})
        image = {"bytes": record.path.read_bytes(), "path": record.path.name}
        texts: list[Any] = [list(record.captions)] if captions_as_list else list(record.captions)
        for text in texts:
            cols[image_column].append(image)
            cols[text_column].append(text)
            if with_label:
                cols["label"].append(SHAPES.index(record.label))
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(cols, features=datasets.Features(features))
            for split, cols in columns.items()
        }
    )


def write_hf_parquet(root: str | Path, records: Sequence[CaptionedImage], **kwargs: Any) -> Path:
    """Hub-style parquet dir ``root/data/<split>-00000-of-00001.parquet``; returns ``root``.

    ``kwargs`` go to :func:`hf_dataset_dict` (``text_column``, ``captions_as_list``, ...).
    """
    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, ds in hf_dataset_dict(records, **kwargs).items():
        ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def write_hf_disk(root: str | Path, records: Sequence[CaptionedImage], **kwargs: Any) -> Path:
    """``DatasetDict.save_to_disk(root)``; returns ``root``; ``kwargs`` as for parquet."""
    root = Path(root)
    hf_dataset_dict(records, **kwargs).save_to_disk(str(root))
    return root
