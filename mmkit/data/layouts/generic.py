"""The layouts of every modality: a CSV/JSONL manifest, a Hugging Face ``save_to_disk`` folder
and parquet files, tried before every other layout; and plain folders, tried after every other
one (``fallback=True``). Audio and video read them as labelled records
(:class:`~mmkit.data.records.SourceOptions` -> ``SourceData``), image-text as captioned images
(:class:`~mmkit.data.captions.CaptionOptions` -> ``CaptionData``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmkit.data import captions, hf, sources
from mmkit.data.hf_tables import Table, is_saved_dataset, parquet_tables, saved_tables
from mmkit.registry import register_layout

MANIFEST_SUFFIXES = (".csv", ".jsonl")


def _rows(tables: list[Table], options: Any, kind: str, base: Path) -> Any:
    if isinstance(options, captions.CaptionOptions):
        return captions.from_tables(tables, options, kind, base=base)
    return hf.from_tables(tables, options, kind, base=base)


def _is_manifest(path: Path, options: Any) -> bool:
    return path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES


@register_layout("manifest", modality=None, detect=_is_manifest)
def read_manifest(path: Path, options: Any) -> Any:
    """A CSV or JSONL file: rows path,label[,split][,group] (audio, video) or
    image,caption[,split][,label] (image-text); paths relative to the file."""
    if isinstance(options, captions.CaptionOptions):
        return captions.read_manifest(path)
    return sources.read_manifest(path, options)


def _is_saved(path: Path, options: Any) -> bool:
    return path.is_dir() and is_saved_dataset(path)


@register_layout("hf_disk", modality=None, detect=_is_saved)
def read_hf_disk(path: Path, options: Any) -> Any:
    """A Hugging Face save_to_disk folder (a Dataset or a DatasetDict), read from its arrow
    files a batch at a time; --hf-split picks one split."""
    return _rows(saved_tables(path, options.hf_split), options, "hf_disk", path)


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix.lower() == ".parquet" else []
    return sorted(path.rglob("*.parquet"))


def _has_parquet(path: Path, options: Any) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".parquet"
    return next(path.rglob("*.parquet"), None) is not None


@register_layout("hf_parquet", modality=None, detect=_has_parquet)
def read_hf_parquet(path: Path, options: Any) -> Any:
    """Parquet files (one, or every one below a folder), a row group at a time; the split comes
    from each file's name or folder (train-00000-of-00001.parquet, test/x.parquet)."""
    root = path.parent if path.is_file() else path
    tables = parquet_tables(_parquet_files(path), root, options.hf_split)
    return _rows(tables, options, "hf_parquet", root)


def _is_folder(path: Path, options: Any) -> bool:
    return path.is_dir()


@register_layout("folders", modality=None, detect=_is_folder, fallback=True)
def read_folders(path: Path, options: Any) -> Any:
    """A folder per class, <label>/<file> or <split>/<label>/<file> (audio, video); images with
    a same-name .txt of captions, one per line, <split>/ folders optional (image-text)."""
    if isinstance(options, captions.CaptionOptions):
        return captions.read_caption_folder(path)
    return sources.read_folder(path, options)
