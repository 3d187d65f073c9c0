"""The data of the image-text protocol (``image_text.py``): Pillow scenes written as CSV
manifests (``image,caption,label``, one row per caption), and the galleries they are scored in.

- ``train.csv``: every scene of the first ``POOL`` renders without a held-out pair, minus the
  same-concept test images of issue 9; no split column, so mmkit splits it as it would a user's
  manifest. It is the same file in every version of the protocol.
- ``same.csv`` / ``new.csv`` (issue 9, ``galleries=1``): 60 renders of 60 scenes whose
  shape-colour pairs training has seen / that contain a held-out pair, distinct as object
  tuples: a few of them show the same two objects listed in the other order, so they are the
  same picture, and in ``new.csv`` 5 captions repeat another image's text;
- ``same-K.csv`` / ``new-K.csv`` (``galleries`` > 1, K = 0 .. galleries - 1): galleries of 60
  renders of 60 scenes distinct as SETS of objects (no two show the same picture, no two
  captions are the same text), drawn from ``EXTRA`` renders after the first ``POOL``, which
  training never sees. The issue-9 files are kept beside them.

An image is ranked among its own gallery's 60 images and 120 captions (``mm eval`` counts ties
against the query), so R@1 means the same in every gallery and a recipe's figure over all
galleries is the mean over ``60 * galleries`` images.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HELD_OUT_PAIRS = {("circle", "red"), ("square", "green"), ("triangle", "blue"), ("cross", "yellow")}
POOL, TEST_IMAGES, DATA_SEED, DATA_VERSION = 1500, 60, 0, 2
EXTRA = 6000  # renders after the first POOL that the further galleries are drawn from
SIZES = ((64, 64), (80, 60), (96, 72))
SETS = ("same", "new")


def is_new(record: Any) -> bool:
    """Whether a scene shows a shape-colour pair training never sees."""
    return any((o.shape, o.colour) in HELD_OUT_PAIRS for o in record.scene.objects)


def _write(path: Path, records: Sequence[Any], root: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=("image", "caption", "label"))
        writer.writeheader()
        for r in records:
            rel = r.path.relative_to(root).as_posix()
            writer.writerows({"image": rel, "caption": c, "label": r.label} for c in r.captions)


def _ordered(record: Any) -> Any:
    return record.scene.objects  # issue 9's identity: the objects in drawing order


def _picture(record: Any) -> Any:
    return frozenset(record.scene.objects)  # what the image shows


def _distinct(records: Sequence[Any], n: int, key: Callable[[Any], Any] = _ordered) -> list[Any]:
    """The first ``n`` records with distinct ``key(record)``."""
    seen, out = set(), []
    for r in records:
        if key(r) not in seen:
            seen.add(key(r))
            out.append(r)
        if len(out) == n:
            return out
    raise RuntimeError(f"only {len(out)} distinct scenes, {n} wanted")


def _galleries(records: Sequence[Any], count: int) -> list[list[Any]]:
    """``count`` disjoint galleries of ``TEST_IMAGES`` distinct pictures, each the first such
    records of what the galleries before it left; no caption text twice in one gallery."""
    left, out = list(records), []
    for _ in range(count):
        gallery = _distinct(left, TEST_IMAGES, _picture)
        captions = [c for r in gallery for c in r.captions]
        if len(set(captions)) != len(captions):
            raise RuntimeError("a gallery repeats a caption")
        taken = {id(r) for r in gallery}
        left = [r for r in left if id(r) not in taken]
        out.append(gallery)
    return out


def data_root(cache: Path, galleries: int) -> Path:
    base = Path(cache).expanduser()
    if galleries == 1:
        return base / f"v1-seed{DATA_SEED}-n{POOL}"
    return base / f"v{DATA_VERSION}-seed{DATA_SEED}-n{POOL + EXTRA}-g{galleries}"


def gallery_files(data: dict[str, Any], name: str) -> list[Path]:
    """The manifests of test set ``name`` (``same`` / ``new``): issue 9's one file, or each
    gallery's."""
    root, galleries = Path(data["root"]), int(data["galleries"])
    if galleries == 1:
        return [root / f"{name}.csv"]
    return [root / f"{name}-{k}.csv" for k in range(galleries)]


def ensure_data(cache: Path, galleries: int = 1) -> dict[str, Any]:
    """Render the pool once and write ``train.csv`` and every gallery's ``same`` / ``new``
    manifest; ``{"root", "galleries", "train_images", "same_images", "new_images"}``."""
    from tests.media.images import write_scene_images

    if galleries < 1:
        raise ValueError(f"galleries ({galleries}) must be >= 1")
    root = data_root(cache, galleries)
    if not (root / "counts.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root.parent))
        try:
            n = POOL if galleries == 1 else POOL + EXTRA
            records = write_scene_images(
                tmp / "images", n, seed=DATA_SEED, sizes=SIZES, splits={"train": 1.0}
            )
            first, extra = records[:POOL], records[POOL:]
            seen = [r for r in first if not is_new(r)]
            same = _distinct(seen[::-1], TEST_IMAGES)  # from the end: the rest stays in order
            new = _distinct([r for r in first if is_new(r)], TEST_IMAGES)
            chosen = {r.path for r in same}
            train = [r for r in seen if r.path not in chosen]
            parts = {"train": train, "same": same, "new": new}
            if galleries > 1:
                for name, new_pairs in (("same", False), ("new", True)):
                    pool = [r for r in extra if is_new(r) == new_pairs]
                    for k, gallery in enumerate(_galleries(pool, galleries)):
                        parts[f"{name}-{k}"] = gallery
            for name, part in parts.items():
                _write(tmp / f"{name}.csv", part, tmp)
            counts = {"train_images": len(train), "galleries": galleries}
            counts |= {f"{s}_images": TEST_IMAGES * galleries for s in SETS}
            (tmp / "counts.json").write_text(json.dumps(counts))
            shutil.rmtree(root, ignore_errors=True)
            tmp.rename(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    counts = json.loads((root / "counts.json").read_text())
    counts.setdefault("galleries", 1)  # a cache written before galleries existed
    return {"root": root, **counts}
