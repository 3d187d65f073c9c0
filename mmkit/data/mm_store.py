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

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmkit.data.captions import CaptionOptions, resolve_captions
from mmkit.data.store import Store
from mmkit.data.store_builder import (
    StoreRecipe,
    build_store,
    default_out,
    fingerprint,
    given_store,
    record_line,
)
from mmkit.data.store_writer import StoreWriter
from mmkit.events import Progress
from mmkit.io.image import RESIZE_DEFAULTS, ImageSource, load_image_array
from mmkit.registry import create_preprocessor


def class_names(store: Store) -> list[str]:
    """The store's class names; ``""`` marks unlabelled images and is not a class."""
    return [name for name in store.labels if name]


def decode_image(source: ImageSource, params: dict[str, Any]) -> np.ndarray:
    """``uint8 [S, S, 3]``: ``source`` as a store with ``params`` holds it (``image_size`` and
    the fitting keys; those missing, as in stores and checkpoints made before they were
    recorded, are the defaults: short-side resize + centre crop, bicubic)."""
    resize = {key: params.get(key, default) for key, default in RESIZE_DEFAULTS.items()}
    return load_image_array(source, int(params["image_size"]), **resize)


def decode_item(source: ImageSource, params: dict[str, Any]) -> np.ndarray:
    return decode_image(source, params)[None]


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
    given = given_store(dataset, "mm", params)
    if given is not None:
        return given
    data = resolve_captions(dataset, options)
    head = ["mm", params, data.labels, data.kind, data.split_source]
    fp = fingerprint(head, (record_line(r, "\x1f".join(r.captions)) for r in data.records))
    size = int(params["image_size"])
    recipe = StoreRecipe("mm", "uint8", (size, size, 3), params, decode_item, processes=True)
    captions: list[str] = []
    owners: list[int] = []

    def added(record: Any, index: int) -> None:
        owners.extend([index] * len(record.captions))
        captions.extend(record.captions)

    def finish(writer: StoreWriter) -> None:
        tokenizer = create_preprocessor("clip_tokenizer", **params["tokenizer"])
        chunks = [tokenizer(captions[i : i + 4096]) for i in range(0, len(captions), 4096)]
        length = int(params["tokenizer"]["context_length"])
        tokens = torch.cat(chunks).int().numpy() if chunks else np.zeros((0, length), np.int32)
        writer.add_extra("tokens", tokens)
        writer.add_extra("caption_image", np.asarray(owners, dtype=np.int64))

    def labels(writer: StoreWriter) -> list[str]:
        unlabelled = any(not item.label for item in writer.items)
        return [*data.labels, *([""] if unlabelled else [])]

    info = {"dataset": dataset, "source_kind": data.kind, "split_source": data.split_source,
            "captions": captions}  # fmt: skip
    return build_store(
        recipe,
        data.records,
        fp=fp,
        out=Path(out) if out else default_out("mm", fp),
        labels=labels,
        info=info,
        progress=progress,
        workers=workers,
        added=added,
        finish=finish,
    )


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
