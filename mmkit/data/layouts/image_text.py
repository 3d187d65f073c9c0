"""The image-text layouts: Flickr8k/30k token files, COCO caption JSON and Karpathy split files.

Each reads a folder or the file itself. Registered in this order, which is the order they are
tried in: a Flickr8k folder that also holds ``dataset_flickr8k.json`` is read as Flickr8k.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mmkit.data.captions import CaptionData, CaptionOptions, Collector
from mmkit.data.splits import normalize_split
from mmkit.errors import UserInputError
from mmkit.io.files import read_text
from mmkit.registry import register_layout

FLICKR_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images", "Images", "images")


def _image_dir(root: Path, candidates: list[Path], first: str | None) -> Path:
    """The candidate folder holding ``first`` (an image file name), else the first candidate."""
    for folder in candidates:
        if first and (folder / first).is_file():
            return folder
    return next((f for f in candidates if f.is_dir()), root)


def _token_file(path: Path) -> Path | None:
    if path.is_file():
        return path if path.name.endswith((".token.txt", ".token")) else None
    return next((p for p in sorted(path.glob("*.token*")) if "lemma" not in p.name), None)


def _is_flickr(path: Path, options: CaptionOptions) -> bool:
    return _token_file(path) is not None


@register_layout("flickr8k", modality="mm", detect=_is_flickr)
def read_flickr(path: Path, options: CaptionOptions) -> CaptionData:
    """Flickr8k/30k: a *.token.txt caption file + *{train,dev,test}Images.txt split lists.

    Lines are ``name.jpg#k<TAB>caption``; with split lists, images in none of them are left out
    (as the official splits do).
    """
    token_file = _token_file(path)
    assert token_file is not None
    root = token_file.parent
    pairs = []
    for n, line in enumerate(read_text(token_file, "caption file").splitlines(), start=1):
        if not line.strip():
            continue
        head, sep, caption = line.partition("\t")
        if not sep:
            raise UserInputError(f"{token_file}:{n}: expected 'name.jpg#k<TAB>caption'")
        pairs.append((head.split("#", 1)[0].strip(), caption))
    splits: dict[str, str] = {}
    for key, split in FLICKR_SPLITS.items():
        for listing in root.glob(f"*{key}Images.txt"):
            names = read_text(listing, "split list").splitlines()
            splits.update((n.strip(), split) for n in names if n.strip())
    folder = _image_dir(root, [root / d for d in IMAGE_DIRS], pairs[0][0] if pairs else None)
    out = Collector(str(token_file))
    for name, caption in pairs:
        if splits and name not in splits:
            continue
        out.add(name, str(folder / name), name, [caption], splits.get(name), None)
    return out.data("flickr8k")


def _coco_split(json_path: Path) -> tuple[str | None, str]:
    """``captions_val2017.json`` -> (``validation``, ``val2017``)."""
    stem = json_path.stem.removeprefix("captions_")
    return normalize_split(re.sub(r"\d+$", "", stem)), stem


def _caption_jsons(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix.lower() == ".json" else []
    return [
        *sorted(path.glob("annotations/captions_*.json")),
        *sorted(path.glob("captions_*.json")),
        *sorted(path.glob("dataset_*.json")),
    ]


def _is_caption_json(path: Path, options: CaptionOptions) -> bool:
    return bool(_caption_jsons(path))


@register_layout("coco", modality="mm", detect=_is_caption_json)
def read_caption_json(path: Path, options: CaptionOptions) -> CaptionData:
    """COCO captions_<split><year>.json, or Karpathy split files (dataset_*.json).

    COCO files sit in ``annotations/`` (or the root), images in ``<split><year>/``; Karpathy files
    (``dataset_coco.json``, ``dataset_flickr8k.json``) list images with ``split`` and ``sentences``.
    """
    files = _caption_jsons(path)
    out = Collector(", ".join(map(str, files)))
    kind = "coco"
    for f in files:
        try:
            doc = json.loads(read_text(f, "caption JSON"))
        except json.JSONDecodeError as exc:
            raise UserInputError(f"cannot read caption JSON {f}: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
            raise UserInputError(f"{f}: expected COCO captions or a Karpathy split file")
        root = f.parent.parent if f.parent.name == "annotations" else f.parent
        karpathy = bool(doc["images"]) and "sentences" in _entry(doc["images"][0], f)
        kind = "karpathy" if karpathy else kind
        try:
            (_karpathy if karpathy else _coco)(doc, f, root, out)
        except (KeyError, TypeError, AttributeError) as exc:  # a field missing or of a wrong type
            what = "Karpathy split file" if karpathy else "COCO caption file"
            detail = f"no {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:80]
            raise UserInputError(f"{f}: not a valid {what} ({detail})") from None
    return out.data(kind)


def _entry(value: Any, f: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        shown = json.dumps(value)[:40]
        raise UserInputError(f"{f}: expected JSON objects in 'images', got {shown}")
    return value


def _coco(doc: dict[str, Any], f: Path, root: Path, out: Collector) -> None:
    split, stem = _coco_split(f)
    by_id = {img["id"]: img["file_name"] for img in doc["images"]}
    first = next(iter(by_id.values()), None)
    folder = _image_dir(root, [root / stem, root / "images" / stem, root / "images"], first)
    captions: dict[Any, list[str]] = {i: [] for i in by_id}
    for ann in doc.get("annotations", []):
        if ann.get("image_id") not in captions:
            raise UserInputError(f"{f}: annotation {ann.get('id')} names an unknown image")
        captions[ann["image_id"]].append(str(ann.get("caption", "")))
    for image_id, file_name in by_id.items():
        source = str(folder / file_name)
        out.add((stem, image_id), source, file_name, captions[image_id], split, None)


def _karpathy(doc: dict[str, Any], f: Path, root: Path, out: Collector) -> None:
    first = doc["images"][0].get("filename")
    folder = _image_dir(root, [root / d for d in IMAGE_DIRS], first)
    for img in doc["images"]:
        rel = Path(img.get("filepath", ""), img["filename"])
        path = root / rel if img.get("filepath") else folder / img["filename"]
        split = "train" if img.get("split") == "restval" else normalize_split(img.get("split"))
        texts = [s.get("raw", " ".join(s.get("tokens", []))) for s in img.get("sentences", [])]
        out.add(str(rel), str(path), str(rel), texts, split, None)
