"""Transfer-learning data: pretrain on one task, fine-tune on a small, different one.

Audio: the pretraining set is spoken digits by espeak-ng's voices (``pretrain/<digit>/``, 1 s,
16 kHz, 2 takes); the new task is ten command words (yes/no/up/down/left/right/on/off/stop/go)
spoken by flite. Its training folders hold ``K`` clips per word (``finetune-K/<word>/``) by the
flite speakers ``kal`` and ``awb``; its test set is every command word by the held-out flite
speakers ``rms`` and ``slt`` (whole speakers never seen in fine-tuning), as recordings arrive in
the wild (0.4-0.95 s, random gain, faint noise, mp3/flac/ogg/wav at 8-48 kHz; listed in
``test/manifest.csv``). Built from the cross-engine protocol's writers; seeded and cached.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.cross_engine_data import (
    DIGITS,
    BenchVoice,
    engine_voices,
    write_test_set,
    write_train_set,
)

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
TEST_SPEAKERS = ("flite-rms", "flite-slt")
DATA_VERSION = 1


@dataclass(frozen=True)
class TransferSpec:
    """What :func:`ensure_data` writes; any change regenerates the cache."""

    shots: tuple[int, ...] = (5, 20)  # fine-tuning clips per word
    pretrain_takes: int = 2
    seed: int = 0
    version: int = DATA_VERSION


@dataclass(frozen=True)
class TransferData:
    root: Path
    pretrain_dir: Path
    pretrain_files: int
    finetune_dirs: dict[int, Path]
    test_manifest: Path
    test_files: int


def finetune_voices() -> tuple[list[BenchVoice], list[BenchVoice]]:
    """flite voices split by underlying speaker: (fine-tuning voices, held-out test voices)."""
    voices = engine_voices("flite")
    test = [v for v in voices if v.voice.speaker in TEST_SPEAKERS]
    train = [v for v in voices if v.voice.speaker not in TEST_SPEAKERS]
    return train, test


def _write_shots(root: Path, voices: list[BenchVoice], shots: int, seed: int) -> None:
    """``shots`` clips per command word: take 0 of every voice (in :func:`engine_voices` order,
    which alternates speakers) before take 1."""
    takes = -(-shots // len(voices))
    pool = root.with_name(root.name + ".pool")
    paths = write_train_set(pool, voices, words=COMMANDS, takes=takes, seed=seed)
    for word in COMMANDS:
        mine = [p for p in paths if p.parent.name == word]  # voice-major, then take
        order = sorted(range(len(mine)), key=lambda i: (i % takes, i))[:shots]
        (root / word).mkdir(parents=True, exist_ok=True)
        for i in order:
            shutil.move(mine[i], root / word / mine[i].name)
    shutil.rmtree(pool)


def ensure_data(cache: str | Path, spec: TransferSpec = TransferSpec()) -> TransferData:
    root = Path(cache).expanduser()
    meta_path = root / "data.json"
    wanted = json.loads(json.dumps(asdict(spec)))
    if not (meta_path.is_file() and json.loads(meta_path.read_text()).get("spec") == wanted):
        shutil.rmtree(root, ignore_errors=True)
        pre = write_train_set(
            root / "pretrain", engine_voices("espeak"), words=DIGITS,
            takes=spec.pretrain_takes, seed=spec.seed,
        )  # fmt: skip
        train_voices, test_voices = finetune_voices()
        for k in spec.shots:
            _write_shots(root / f"finetune-{k}", train_voices, k, spec.seed)
        test = write_test_set(root / "test", test_voices, words=COMMANDS, seed=spec.seed)
        meta = {"spec": wanted, "pretrain": len(pre), "test": len(test)}
        meta_path.write_text(json.dumps(meta, indent=2))
    meta = json.loads(meta_path.read_text())
    return TransferData(
        root,
        root / "pretrain",
        meta["pretrain"],
        {k: root / f"finetune-{k}" for k in spec.shots},
        root / "test" / "manifest.csv",
        meta["test"],
    )
