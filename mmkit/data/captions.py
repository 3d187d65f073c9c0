"""Resolve ``--dataset SRC`` into captioned images for image-text models (docs/design.md).

A local path is read by the first registered layout (:mod:`mmkit.data.layouts`) that takes it,
in this order; anything else is a Hugging Face hub id:

- CSV / JSONL manifest ``image,caption[,split][,label]``, image paths relative to the manifest; an
  image on several rows has several captions (JSONL may also give ``"captions": [...]``).
- HF parquet files / ``save_to_disk`` dirs / hub ids: an image column (read with
  ``decode=False``), a text column holding a string or a list of strings, optionally a ``label``
  (``ClassLabel`` names kept) and a ``split`` column. Rows repeating an image are merged.
- A registered ``mm`` layout (:mod:`mmkit.data.layouts.image_text`: Flickr8k token files, COCO
  caption JSON, Karpathy split files; plugins after them).
- A folder of images with same-name ``.txt`` files (one caption per line); a first folder level
  named ``train/ validation|val/ test/`` gives the split.

Images without a split get a deterministic hash split of their name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmkit.data import hf
from mmkit.data.hf_tables import RowBytes, Table, hub_tables
from mmkit.data.records import Unusable, find_layout, label_names
from mmkit.data.sources import (
    SourceOptions,
    local_path,
    media_file,
    media_listing,
    read_rows,
    row_value,
)
from mmkit.data.splits import hash_split, normalize_split, split_source_of
from mmkit.errors import UserInputError
from mmkit.io.files import link_out_of
from mmkit.io.image import IMAGE_EXTENSIONS

IMAGE_EXTS = tuple(sorted(IMAGE_EXTENSIONS))
TEXT_COLUMNS = ("caption", "captions", "text", "texts", "sentences", "sentence", "raw")


@dataclass(frozen=True)
class CaptionRecord:
    """One image (a path, its encoded bytes, or where they are in an HF table) with every
    caption of it."""

    source: str | bytes | Any  # or a RowBytes, or Unusable (listed as skipped)
    captions: tuple[str, ...]
    name: str
    split: str | None = None
    label: str | None = None


@dataclass
class CaptionData:
    """Captioned images, their class names (empty when unlabelled) and the source kind."""

    records: list[CaptionRecord]
    labels: list[str]
    kind: str
    split_source: str = "dataset"  # or "hash": no image had a split; mmkit hashed them

    def with_splits(self) -> CaptionData:
        records = [r if r.split else replace(r, split=hash_split(r.name)) for r in self.records]
        return CaptionData(records, self.labels, self.kind, split_source_of(self.records))


@dataclass(frozen=True)
class CaptionOptions:
    """HF column names and hub settings (``--image-column``, ``--text-column``, ...)."""

    image_column: str | None = None
    text_column: str | None = None
    label_column: str = "label"
    hf_config: str | None = None
    hf_split: str | None = None


class Collector:
    """Merges captions per image (first-seen order) and checks that each image has one split."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: dict[Any, dict[str, Any]] = {}

    def add(
        self,
        key: Any,
        source: Any,
        name: str,
        captions: list[str],
        split: str | None,
        label: str | None,
    ) -> None:
        item = self.items.setdefault(
            key, {"source": source, "name": name, "captions": [], "split": split, "label": label}
        )
        if item["split"] != split:
            raise UserInputError(
                f"{self.where}: {name} is in two splits ({item['split']}, {split})"
            )
        item["captions"].extend(c.strip() for c in captions if c and c.strip())
        item["label"] = item["label"] or label

    def data(self, kind: str, labels: list[str] | None = None) -> CaptionData:
        """The images; one left without a caption is :class:`Unusable` (listed as skipped)."""
        records = []
        for i in self.items.values():
            source = i["source"]
            if not i["captions"] and not isinstance(source, Unusable):
                source = Unusable("no caption")
            records.append(
                CaptionRecord(source, tuple(i["captions"]), i["name"], i["split"], i["label"])
            )
        return CaptionData(records, label_names(records) if labels is None else labels, kind)


def resolve_captions(src: str, options: CaptionOptions) -> CaptionData:
    """Turn ``--dataset SRC`` into captioned images; every image gets a split."""
    path = local_path(src)
    if path is not None:
        data = read_local(path, options)
    elif src.startswith((".", "/", "~")) or src.endswith((".csv", ".jsonl", ".json", ".parquet")):
        raise UserInputError(f"dataset not found: {src}")
    else:
        tables = hub_tables(src, options.hf_config, options.hf_split)
        data = from_tables(tables, options, "hf_hub")
    if not data.records:
        raise UserInputError(f"no captioned images found in {src}")
    return data.with_splits()


def read_local(path: Path, options: CaptionOptions) -> CaptionData:
    """A local path, read by the first registered ``mm`` layout that takes it
    (:mod:`mmkit.data.layouts`: manifests and HF files, Flickr8k, COCO, plugins, a folder)."""
    layout = find_layout(path, options, "mm")
    if layout is None:
        raise UserInputError(
            f"{path}: expected a folder, a .csv/.jsonl manifest, a caption .json, a Flickr "
            "token file or a .parquet file"
        )
    return layout.factory(path, options)


def read_manifest(path: Path) -> CaptionData:
    """CSV/JSONL rows ``image,caption[,split][,label]``; repeated images gather captions. A row
    with an image but no caption text is a one-line :class:`UserInputError` naming the line."""
    out = Collector(str(path))
    for n, row in read_rows(path):
        where = f"{path}:{n}"
        image_key = "image" if "image" in row else "path"
        text_key = next((k for k in ("captions", "caption", "text") if k in row), None)
        if image_key not in row or text_key is None:
            raise UserInputError(f"{where}: a manifest row needs 'image' and 'caption' columns")
        image = row_value(row, image_key, where)
        texts = _captions(row[text_key], where, image)
        split = row_value(row, "split", where, required=False)
        if split is not None and normalize_split(split) is None:
            raise UserInputError(f"{where}: unknown split {split!r}")
        media = Path(image)
        media = media if media.is_absolute() else path.parent / media
        label = row_value(row, "label", where, required=False)
        source, _ = media_file(media, path.parent, image)
        out.add(str(media), source, image, texts, normalize_split(split), label)
    return out.data("manifest")


def _captions(value: Any, where: str, image: str) -> list[str]:
    """A manifest's caption value (a string, or JSONL's list of strings) as a non-empty list of
    non-blank captions; anything else is a :class:`UserInputError` naming ``where``."""
    texts = value if isinstance(value, list) else [value]
    if not all(isinstance(t, str) for t in texts):
        shown = json.dumps(value)[:40]
        raise UserInputError(f"{where}: captions of {image} must be text, got {shown}")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UserInputError(f"{where}: empty caption for {image}")
    return texts


def read_caption_folder(root: Path) -> CaptionData:
    """Images with a same-name ``.txt`` (one caption per line); ``<split>/`` folders optional."""
    out = Collector(str(root))
    images, links_out = media_listing(root, IMAGE_EXTS)
    for link in links_out:  # skipped, with the reason
        source, name = media_file(link, root, str(link.relative_to(root)))
        out.add(str(link), source, name, [], None, None)
    for image in images:
        text = image.with_suffix(".txt")
        if not text.is_file():
            continue
        rel = image.relative_to(root)
        split = normalize_split(rel.parts[0]) if len(rel.parts) > 1 else None
        lines = text.read_text(encoding="utf-8", errors="replace").splitlines()
        source, name = media_file(image, root, str(rel))
        problem = link_out_of(text, root)  # the captions must come from the folder too
        source = Unusable(f"its captions file is {problem}") if problem else source
        out.add(str(image), source, name, lines, split, None)
    return out.data("caption_folder")


def _text_column(part: Any, options: CaptionOptions, image_column: str) -> str:
    if options.text_column:
        if options.text_column not in part.column_names:
            raise UserInputError(
                f"no column {options.text_column!r} (columns: {', '.join(part.column_names)})"
            )
        return options.text_column
    for name in TEXT_COLUMNS:
        if name in part.column_names and name != image_column:
            return name
    for name, feature in part.features.items():
        if name != image_column and "string" in repr(feature) and name != "split":
            return name
    raise UserInputError(
        f"no text column found (columns: {', '.join(part.column_names)}); pass --text-column"
    )


def from_tables(
    tables: list[Table], options: CaptionOptions, kind: str, base: Path | None = None
) -> CaptionData:
    """Rows of a dataset's tables -> captioned images (rows repeating an image merged); a row
    without an image, or whose caption or label is not UTF-8 text, is skipped with the reason
    (a ``ClassLabel`` -1 or a null label is an unlabelled image)."""
    media = SourceOptions("image", IMAGE_EXTS, media_column=options.image_column)
    out = Collector(kind)
    names: list[str] | None = None
    for number, table in enumerate(tables):
        image_col = hf.media_column(table, media)
        text_col = _text_column(table, options, image_col)
        label_col = options.label_column if options.label_column in table.column_names else None
        names = hf.class_names(table, label_col) if label_col else names
        split_col = "split" if "split" in table.column_names else None
        wanted = list(dict.fromkeys(c for c in (image_col, text_col, label_col, split_col) if c))
        default_split = normalize_split(table.split) if table.split else None
        for n, row in enumerate(table.rows(wanted)):
            source, name = hf.media_source(row[image_col], base, f"{table.split or 'row'}-{n}")
            texts = row[text_col] if isinstance(row[text_col], list) else [row[text_col]]
            value = row[label_col] if label_col else None
            label = None
            if value is not None and not (names and value == -1):  # -1: unlabelled
                label = hf.label_text(value, names, table, label_col or "")
            if not isinstance(source, Unusable) and any(isinstance(t, bytes) for t in texts):
                source = Unusable("a caption is not UTF-8 text")
            if not isinstance(source, Unusable) and isinstance(label, Unusable):
                source = label
            if isinstance(source, Unusable):
                out.add(("unusable", number, n), source, name, [], default_split, None)
                continue
            if isinstance(source, bytes):  # read again when the store is built
                source = RowBytes(table, image_col, n, hashlib.sha1(source).hexdigest())
            key = source.stamp if isinstance(source, RowBytes) else source
            captions = [str(t) for t in texts if t is not None]
            split = row[split_col] if split_col else None
            split = (normalize_split(split) if isinstance(split, str) else None) or default_split
            out.add((split, key), source, name, captions, split, label)
    return out.data(kind, names)
