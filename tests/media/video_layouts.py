"""Write a list of :class:`~tests.media.video.VideoClip` in each dataset layout of docs/design.md.

Every writer copies the encoded files (transcoding only when the layout fixes the extension, as
UCF101's ``.avi`` does) and returns the path to pass as ``--dataset``:

- :func:`write_folder_layout`: ``root/[<split>/]<label>/<file>``.
- :func:`write_ucf101_layout`: ``classInd.txt``, ``trainlist01.txt``, ``testlist01.txt`` and
  ``<Class>/v_<Class>_gXX_cYY.avi``, CRLF line ends and UCF101's own spelling quirk: the class
  ``HandstandPushups`` has files named ``v_HandStandPushups_*`` (``file_class_names``).
- :func:`write_manifest`: CSV or JSONL ``path,label[,split]`` with paths relative to the manifest.
- :func:`write_hf_parquet` / :func:`write_hf_save_to_disk`: a ``video`` column holding the encoded
  bytes (``datasets.Video()`` feature, ``{"bytes", "path"}`` rows, as on the hub) or plain path
  strings, and a ``ClassLabel`` ``label``. Nothing here decodes video through ``datasets``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.media.video import VideoClip, transcode_video

UCF_QUIRK = {"HandstandPushups": "HandStandPushups"}


def _place(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst``; transcode (codec by extension) when the suffixes differ."""
    if src.suffix.lower() != dst.suffix.lower():
        return transcode_video(src, dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _place_all(pairs: Sequence[tuple[Path, Path]], workers: int = 2) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda pair: _place(*pair), pairs))


def _splits(clips: Sequence[VideoClip]) -> list[str | None]:
    return sorted({c.split for c in clips}, key=lambda s: (s is None, s or ""))


def write_folder_layout(
    root: str | os.PathLike[str], clips: Sequence[VideoClip], *, split_dirs: bool = True
) -> Path:
    """``root/<split>/<label>/<file>``, or ``root/<label>/<file>`` without splits."""
    root = Path(root)
    for clip in clips:
        parts = [clip.split] if split_dirs and clip.split else []
        _place(clip.path, root.joinpath(*parts, clip.label, clip.path.name))
    return root


def write_ucf101_layout(
    root: str | os.PathLike[str],
    clips: Sequence[VideoClip],
    *,
    class_names: Mapping[str, str] | None = None,
    file_class_names: Mapping[str, str] = UCF_QUIRK,
    split_index: int = 1,
    newline: str = "\r\n",
) -> Path:
    """UCF101: ``root/classInd.txt`` + ``trainlistNN.txt`` / ``testlistNN.txt`` + ``root/<Class>/``.

    ``class_names`` maps clip labels to UCF class names (default: the label). Class indices are
    1-based in alphabetical order. The group ``gXX`` is the clip's source (UCF101 groups are scenes
    too); split ``test`` goes to the test list (no label column), every other split to the train
    list. ``file_class_names`` gives the spelling used inside file names when it differs.
    """
    root = Path(root)
    names = {c.label: (class_names or {}).get(c.label, c.label) for c in clips}
    index = {name: i + 1 for i, name in enumerate(sorted(set(names.values())))}
    groups: dict[str, dict[str, int]] = defaultdict(dict)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    train, test, pairs = [], [], []
    for clip in clips:
        cls = names[clip.label]
        group = groups[cls].setdefault(clip.source, len(groups[cls]) + 1)
        counts[cls, group] += 1
        stem = file_class_names.get(cls, cls)
        rel = f"{cls}/v_{stem}_g{group:02d}_c{counts[cls, group]:02d}.avi"
        pairs.append((clip.path, root / rel))
        (test if clip.split == "test" else train).append(
            rel if clip.split == "test" else f"{rel} {index[cls]}"
        )
    _place_all(pairs)
    root.mkdir(parents=True, exist_ok=True)
    lines = {
        "classInd.txt": [f"{i} {name}" for name, i in index.items()],
        f"trainlist{split_index:02d}.txt": train,
        f"testlist{split_index:02d}.txt": test,
    }
    for fname, rows in lines.items():
        (root / fname).write_bytes("".join(r + newline for r in rows).encode())
    return root


def write_manifest(
    root: str | os.PathLike[str],
    clips: Sequence[VideoClip],
    *,
    fmt: str = "csv",
    with_split: bool = True,
    video_dir: str = "videos",
) -> Path:
    """Copy clips to ``root/<video_dir>/<label>/`` and write ``root/manifest.{csv,jsonl}``.

    Columns ``path,label[,split]``; paths are relative to the manifest. Returns the manifest path.
    """
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"fmt must be 'csv' or 'jsonl', got {fmt!r}")
    root = Path(root)
    rows = []
    for clip in clips:
        rel = f"{video_dir}/{clip.label}/{clip.path.name}"
        _place(clip.path, root / rel)
        row = {"path": rel, "label": clip.label}
        if with_split and clip.split:
            row["split"] = clip.split
        rows.append(row)
    manifest = root / f"manifest.{fmt}"
    if fmt == "jsonl":
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return manifest
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _hf_splits(
    root: Path, clips: Sequence[VideoClip], storage: str, video_column: str, absolute: bool
) -> dict[str, Any]:
    """One ``datasets.Dataset`` per split (``train`` when clips carry no split)."""
    import datasets

    if storage not in ("bytes", "path"):
        raise ValueError(f"storage must be 'bytes' or 'path', got {storage!r}")
    labels = sorted({c.label for c in clips})
    video_feature = datasets.Video() if storage == "bytes" else datasets.Value("string")
    features = datasets.Features(
        {video_column: video_feature, "label": datasets.ClassLabel(names=labels)}
    )
    out = {}
    for split in _splits(clips):
        chosen = [c for c in clips if c.split == split]
        if storage == "bytes":
            videos: list[Any] = [
                {"bytes": c.path.read_bytes(), "path": c.path.name} for c in chosen
            ]
        else:
            videos = []
            for c in chosen:
                rel = f"videos/{c.label}/{c.path.name}"
                _place(c.path, root / rel)
                videos.append(str((root / rel).resolve()) if absolute else rel)
        data = {video_column: videos, "label": [labels.index(c.label) for c in chosen]}
        out[split or "train"] = datasets.Dataset.from_dict(data, features=features)
    return out


def write_hf_parquet(
    root: str | os.PathLike[str],
    clips: Sequence[VideoClip],
    *,
    storage: str = "bytes",
    video_column: str = "video",
) -> Path:
    """A hub-style parquet dir: ``root/data/<split>-00000-of-00001.parquet``.

    ``storage="path"`` stores paths relative to ``root`` (files copied to ``root/videos/``).
    The HF feature metadata (``Video``, ``ClassLabel`` names) travels in the parquet schema.
    """
    import pyarrow.parquet as pq

    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, ds in _hf_splits(root, clips, storage, video_column, absolute=False).items():
        # pyarrow directly: datasets.to_parquet stats every path relative to the cwd.
        pq.write_table(ds.data.table, root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def write_hf_save_to_disk(
    root: str | os.PathLike[str],
    clips: Sequence[VideoClip],
    *,
    storage: str = "bytes",
    video_column: str = "video",
) -> Path:
    """A ``DatasetDict.save_to_disk`` dir; ``storage="path"`` stores absolute path strings."""
    import datasets

    root = Path(root)
    splits = _hf_splits(root, clips, storage, video_column, absolute=True)
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        datasets.DatasetDict(splits).save_to_disk(str(root))
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
    return root
