"""The UCF101 layout: ``classInd.txt`` + ``trainlist0N.txt`` / ``testlist0N.txt`` + class folders.

Lists may sit at the root or in ``ucfTrainTestlist/``; videos at ``root/<Class>/`` or
``root/UCF-101/<Class>/``. Class names are matched without regard to case, because the official
lists spell ``HandstandPushups`` where the folder and file names say ``HandStandPushups``. The train
list is split into train/validation by the ``gNN`` group (clips of one group share actor and scene,
so all classes of a group go to one side, as in the official folds); the test list is the test
split.
"""

from __future__ import annotations

import re
from pathlib import Path

from mmkit.data.records import Record, SourceData, SourceOptions
from mmkit.data.splits import hash_split
from mmkit.errors import UserInputError
from mmkit.registry import register_layout

_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


def _lists_dir(root: Path) -> Path | None:
    for d in (root, root / "ucfTrainTestlist"):
        if (d / "classInd.txt").is_file():
            return d
    return None


def detect(root: Path, options: SourceOptions) -> bool:
    return _lists_dir(root) is not None


@register_layout("ucf101", modality="video", detect=detect)
def read(root: Path, options: SourceOptions) -> SourceData:
    """UCF101: classInd.txt + trainlist0N.txt / testlist0N.txt (--fold N) + class folders."""
    lists = _lists_dir(root)
    assert lists is not None
    fold = int(options.extra.get("fold", 1))
    classes: dict[int, str] = {}
    for line in (lists / "classInd.txt").read_text().splitlines():
        if line.strip():
            idx, name = line.split()
            classes[int(idx)] = name
    by_lower = {name.lower(): name for name in classes.values()}
    video_root = root / "UCF-101" if (root / "UCF-101").is_dir() else root
    folders = {p.name.lower(): p for p in video_root.iterdir() if p.is_dir()}
    records = []
    for kind in ("train", "test"):
        listing = lists / f"{kind}list{fold:02d}.txt"
        if not listing.is_file():
            raise UserInputError(f"{listing} not found (--fold {fold})")
        for n, line in enumerate(listing.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            rel = line.split()[0]
            folder_name, file_name = rel.replace("\\", "/").split("/")[-2:]
            label = by_lower.get(folder_name.lower())
            folder = folders.get(folder_name.lower())
            if label is None or folder is None:
                raise UserInputError(f"{listing}:{n}: unknown class folder {folder_name!r}")
            match = _GROUP.search(file_name)
            # the official folds keep whole groups (actor + scene, across classes) together
            group = f"g{match.group(1)}" if match else file_name
            split = "test" if kind == "test" else hash_split(group, validation=0.1, test=0.0)
            records.append(
                Record(str(folder / file_name), label, f"{label}/{file_name}", split, group)
            )
    labels = [classes[i] for i in sorted(classes)]
    return SourceData(records, labels, "ucf101")
