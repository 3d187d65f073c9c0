"""The prepared image-text store: every image decoded once, every caption tokenised once.

Layout (a :class:`~mmkit.data.store.Store` of modality ``mm``): one ``uint8 [S, S, 3]`` row per
image (fitted into ``S x S`` as the model's preprocessing says: :func:`decode_image`), the item
label being the class name or ``""``; extras ``tokens`` (``int32 [num_captions,
context_length]``) and ``caption_image`` (the item index of each caption); the caption texts in
the manifest. ``params`` (image size, ``resize_mode`` / ``interpolation`` / ``fill_color``,
tokenizer) are part of the fingerprint, so a model with another image size, resize or tokenizer
gets its own store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmkit.cache import cache_dir
from mmkit.data.captions import CaptionData, CaptionOptions, resolve_captions
from mmkit.data.store import Store, StoreWriter, is_store, open_cached
from mmkit.engine.events import NullProgress, Progress
from mmkit.errors import UserInputError
from mmkit.io.image import RESIZE_DEFAULTS, ImageSource, load_image_array
from mmkit.pipelines.classify import decode_all, source_stamp
from mmkit.registry import create_preprocessor
from mmkit.tasks.contrastive import class_names


def decode_image(source: ImageSource, params: dict[str, Any]) -> np.ndarray:
    """``uint8 [S, S, 3]``: ``source`` as a store with ``params`` holds it (``image_size`` and
    the fitting keys; those missing, as in stores and checkpoints made before they were
    recorded, are the defaults: short-side resize + centre crop, bicubic)."""
    resize = {key: params.get(key, default) for key, default in RESIZE_DEFAULTS.items()}
    return load_image_array(source, int(params["image_size"]), **resize)


class _ImageDecoder:
    @staticmethod
    def decode(source: str | bytes, params: dict[str, Any]) -> np.ndarray:
        return decode_image(source, params)[None]


def _fingerprint(data: CaptionData, params: dict[str, Any]) -> str:
    h = hashlib.sha1(json.dumps(["mm", params, data.labels, data.kind, data.split_source]).encode())
    for r in data.records:
        text = "\x1f".join(r.captions)
        h.update(f"{r.name}|{r.label}|{r.split}|{text}|{source_stamp(r.source)}\n".encode())
    return h.hexdigest()[:16]


def prepare_store(
    dataset: str,
    options: CaptionOptions,
    params: dict[str, Any],
    *,
    out: str | Path | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> Store:
    """Decode every image of ``dataset`` at ``params["image_size"]`` and tokenise every caption
    with ``clip_tokenizer(**params["tokenizer"])``; reused when the source is unchanged.
    Unreadable images are skipped and listed in the store."""
    progress = progress or NullProgress()
    if is_store(dataset):
        store = Store(dataset)
        if store.modality != "mm" or store.params != params:
            raise UserInputError(
                f"{dataset} is a {store.modality} store with {store.params}; "
                f"this model needs an mm store with {params}"
            )
        return store
    data = resolve_captions(dataset, options)
    fp = _fingerprint(data, params)
    out = Path(out) if out else cache_dir() / "prepared" / f"mm-{fp}"
    cached = open_cached(out, fp, progress)
    if cached is not None:
        return cached
    size = int(params["image_size"])
    writer = StoreWriter(
        out, modality="mm", dtype="uint8", item_shape=(size, size, 3), params=params
    )
    captions: list[str] = []
    owners: list[int] = []
    try:
        progress.start("prepare", len(data.records))
        for record, result in decode_all(_ImageDecoder, data.records, params, workers):
            if isinstance(result, str):
                writer.skip(record.name, result)
                progress.message(f"skipped {record.name}: {result}")
            else:
                owners.extend([len(writer.items)] * len(record.captions))
                captions.extend(record.captions)
                label, split = record.label or "", record.split or "train"
                writer.add(result, name=record.name, label=label, split=split, group="")
            progress.advance(1)
        tokenizer = create_preprocessor("clip_tokenizer", **params["tokenizer"])
        chunks = [tokenizer(captions[i : i + 4096]) for i in range(0, len(captions), 4096)]
        length = int(params["tokenizer"]["context_length"])
        tokens = torch.cat(chunks).int().numpy() if chunks else np.zeros((0, length), np.int32)
        writer.add_extra("tokens", tokens)
        writer.add_extra("caption_image", np.asarray(owners, dtype=np.int64))
        unlabelled = any(not item.label for item in writer.items)
        store = writer.commit(
            [*data.labels, *([""] if unlabelled else [])],
            fingerprint=fp,
            dataset=dataset,
            source_kind=data.kind,
            split_source=data.split_source,
            captions=captions,
        )
    except BaseException:
        writer.abort()
        raise
    progress.end(images=len(store), captions=len(captions), skipped=len(store.skipped))
    return store


def summary(store: Store) -> dict[str, Any]:
    """The ``mm prepare`` report: images and captions per split, classes, skipped files."""
    owners = np.asarray(store.extra("caption_image"))
    per_image = np.bincount(owners, minlength=len(store))
    splits: dict[str, dict[str, int]] = {}
    per_class: dict[str, dict[str, int]] = {}
    for i, item in enumerate(store.items):
        entry = splits.setdefault(item.split, {"images": 0, "captions": 0})
        entry["images"] += 1
        entry["captions"] += int(per_image[i])
        if item.label:
            counts = per_class.setdefault(item.split, {})
            counts[item.label] = counts.get(item.label, 0) + 1
    return {
        "path": str(store.path),
        "modality": "mm",
        "num_images": len(store),
        "num_captions": len(owners),
        "split_source": store.split_source,
        "splits": splits,
        "labels": class_names(store),
        "per_class": per_class,
        "skipped": store.skipped,
        "params": store.params,
    }
