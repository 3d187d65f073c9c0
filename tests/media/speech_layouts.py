"""Write a spoken-word set (a list of :class:`~tests.media.speech.SpeechItem`) in every source
layout mmkit reads (docs/design.md): split folders, the Speech Commands raw layout, CSV/JSONL
manifests, and Hugging Face parquet / ``save_to_disk`` directories in the
``google/speech_commands`` schema.

Every writer takes ``voice_splits``: voice id -> ``"train"`` | ``"validation"`` | ``"test"``
(:meth:`~tests.media.speech.VoiceSplit.mapping`); voices not in it count as ``"train"``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmkit.io.audio import load_audio
from tests.media.speech import SpeechItem, SpeechToolError, tool_path, write_audio

if TYPE_CHECKING:
    from datasets import Dataset, Features

SPLITS = ("train", "validation", "test")
NOISE_COLORS = ("white", "pink", "brown")
# The ten core commands of Speech Commands; other words are "unknown" (``is_unknown``).
CORE_WORDS = frozenset({"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"})


def split_of(item: SpeechItem, voice_splits: Mapping[str, str] | None) -> str:
    """The split of ``item`` under ``voice_splits`` (``"train"`` when its voice is not listed)."""
    split = (voice_splits or {}).get(item.voice, "train")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def speaker_code(voice_id: str) -> str:
    """An 8-hex-digit speaker id derived from the voice id, like Speech Commands' speaker hashes."""
    return hashlib.sha1(voice_id.encode()).hexdigest()[:8]


def write_split_folders(
    root: str | Path,
    items: Iterable[SpeechItem],
    voice_splits: Mapping[str, str] | None,
    *,
    split_dirs: Mapping[str, str] | None = None,
) -> Path:
    """Copy items to ``root/<split dir>/<word>/<file>``; split dirs default to train/val/test."""
    root = Path(root)
    dirs = {"train": "train", "validation": "val", "test": "test", **(split_dirs or {})}
    for item in items:
        dst = root / dirs[split_of(item, voice_splits)] / item.word / item.path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, dst)
    return root


def write_background_noise(
    folder: str | Path, *, seconds: float = 3.0, sample_rate: int = 16000
) -> list[Path]:
    """White, pink and brown noise clips made by ``sox -R -n out.wav synth <seconds> <color>noise``
    (``-R``: repeatable, the same bytes every run)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sox = tool_path("sox")
    paths = []
    for color in NOISE_COLORS:
        out = folder / f"{color}_noise.wav"
        cmd = [sox, "-R", "-n", "-r", str(sample_rate), "-b", "16", "-c", "1", str(out)]
        cmd += ["synth", f"{seconds:g}", f"{color}noise", "vol", "0.3"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SpeechToolError(f"sox failed ({proc.returncode}): {proc.stderr.strip()}")
        paths.append(out)
    return paths


def write_speech_commands(
    root: str | Path,
    items: Iterable[SpeechItem],
    voice_splits: Mapping[str, str] | None,
    *,
    sample_rate: int = 16000,
    noise_seconds: float = 3.0,
) -> Path:
    """The Speech Commands raw layout: ``root/<word>/<speaker>_nohash_<take>.wav`` (16-bit PCM at
    ``sample_rate``), ``validation_list.txt`` / ``testing_list.txt`` naming the files of held-out
    speakers, and ``_background_noise_/`` with white, pink and brown noise plus its README."""
    root = Path(root)
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    for item in items:
        rel = f"{item.word}/{speaker_code(item.voice)}_nohash_{item.take}.wav"
        write_audio(root / rel, load_audio(item.path, sample_rate), sample_rate)
        split = split_of(item, voice_splits)
        if split in lists:
            lists[split].append(rel)
    (root / "validation_list.txt").write_text(
        "".join(f"{r}\n" for r in sorted(lists["validation"]))
    )
    (root / "testing_list.txt").write_text("".join(f"{r}\n" for r in sorted(lists["test"])))
    noise = root / "_background_noise_"
    write_background_noise(noise, seconds=noise_seconds, sample_rate=sample_rate)
    (noise / "README.md").write_text("Noise clips made with sox synth (white, pink, brown).\n")
    (root / "README.md").write_text("Synthetic spoken words in the Speech Commands layout.\n")
    return root


def write_manifest(
    path: str | Path,
    items: Iterable[SpeechItem],
    voice_splits: Mapping[str, str] | None = None,
) -> Path:
    """A ``.csv`` or ``.jsonl`` manifest with ``path,label[,split]``, paths relative to it.

    The ``split`` column is written only when ``voice_splits`` is given.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ValueError(f"manifest must end in .csv or .jsonl, got {path.name!r}")
    rows = []
    for item in items:
        row = {"path": Path(os.path.relpath(item.path, path.parent)).as_posix(), "label": item.word}
        if voice_splits is not None:
            row["split"] = split_of(item, voice_splits)
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        if suffix == ".jsonl":
            f.writelines(json.dumps(row) + "\n" for row in rows)
        else:
            fields = ["path", "label"] + (["split"] if voice_splits is not None else [])
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return path


def speech_commands_features(labels: Sequence[str], *, audio_decode: bool = False) -> Features:
    """The ``google/speech_commands`` features (``datasets.Features``) for ``labels``."""
    from datasets import Audio, ClassLabel, Features, Value

    return Features(
        {
            "file": Value("string"),
            "audio": Audio(sampling_rate=16000, decode=audio_decode),
            "label": ClassLabel(names=list(labels)),
            "is_unknown": Value("bool"),
            "speaker_id": Value("string"),
            "utterance_id": Value("int8"),
        }
    )


def _hf_splits(
    items: Iterable[SpeechItem],
    voice_splits: Mapping[str, str] | None,
    labels: Sequence[str] | None,
    audio_decode: bool,
) -> dict[str, Dataset]:
    """One ``datasets.Dataset`` per split. Rows are built as an Arrow table, because
    ``Audio.encode_example`` needs torchcodec even for ``{"bytes", "path"}`` values."""
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo

    items = list(items)
    labels = list(labels) if labels is not None else sorted({i.word for i in items})
    features = speech_commands_features(labels, audio_decode=audio_decode)
    columns: dict[str, dict[str, list]] = {s: {k: [] for k in features} for s in SPLITS}
    for item in items:
        speaker = speaker_code(item.voice)
        col = columns[split_of(item, voice_splits)]
        file = f"{item.word}/{speaker}_nohash_{item.take}{item.path.suffix}"
        col["file"].append(file)
        col["audio"].append({"bytes": item.path.read_bytes(), "path": file})
        col["label"].append(labels.index(item.word))
        col["is_unknown"].append(item.word not in CORE_WORDS)
        col["speaker_id"].append(speaker)
        col["utterance_id"].append(item.take)
    return {
        split: Dataset(
            pa.Table.from_pydict(col, schema=features.arrow_schema),
            info=DatasetInfo(features=features),
            split=split,
        )
        for split, col in columns.items()
    }


def write_hf_parquet(
    root: str | Path,
    items: Iterable[SpeechItem],
    voice_splits: Mapping[str, str] | None,
    *,
    labels: Sequence[str] | None = None,
    audio_decode: bool = False,
) -> Path:
    """A parquet directory ``root/{train,validation,test}-00000-of-00001.parquet`` in the
    ``google/speech_commands`` schema, audio as ``{"bytes", "path"}``.

    ``audio_decode=True`` stores the Audio feature as the hub's parquet exports do (``decode``
    left on), so readers must cast it to ``decode=False`` themselves.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, ds in _hf_splits(items, voice_splits, labels, audio_decode).items():
        if len(ds):
            ds.to_parquet(str(root / f"{split}-00000-of-00001.parquet"))
    return root


def write_hf_disk(
    root: str | Path,
    items: Iterable[SpeechItem],
    voice_splits: Mapping[str, str] | None,
    *,
    labels: Sequence[str] | None = None,
) -> Path:
    """A ``DatasetDict(train, validation, test).save_to_disk(root)`` directory in the
    ``google/speech_commands`` schema with ``Audio(decode=False)``."""
    from datasets import DatasetDict

    root = Path(root)
    DatasetDict(_hf_splits(items, voice_splits, labels, audio_decode=False)).save_to_disk(str(root))
    return root
