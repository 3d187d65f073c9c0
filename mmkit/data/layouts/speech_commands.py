"""The Speech Commands raw layout and the ``speech_commands`` alias.

Layout: ``<word>/<speaker>_nohash_<n>.wav`` + ``validation_list.txt`` + ``testing_list.txt`` (files
named in neither are train) + ``_background_noise_/*.wav``. The noise files feed noise mixing, and
with ``--classes 12`` (10 core words + ``_unknown_`` + ``_silence_``) one-second pieces of them
become the ``_silence_`` class, addressed as media fragments ``file.wav#t=START,END``.
"""

from __future__ import annotations

from pathlib import Path

from mmkit.cache import cache_dir
from mmkit.data.records import Record, SourceData, SourceOptions, register_alias
from mmkit.data.splits import hash_split
from mmkit.errors import UserInputError
from mmkit.registry import register_layout

CORE_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
NOISE_DIR = "_background_noise_"
ARCHIVE = "speech_commands_v0.02"


def detect(root: Path, options: SourceOptions) -> bool:
    return (root / "validation_list.txt").is_file() or (root / "testing_list.txt").is_file()


def speaker_of(name: str) -> str:
    """``yes/0a7c2a8d_nohash_0.wav`` -> ``0a7c2a8d``."""
    return Path(name).name.split("_nohash_")[0]


@register_layout("speech_commands", modality="audio", detect=detect)
def read(root: Path, options: SourceOptions) -> SourceData:
    """Speech Commands: word folders + validation_list.txt + testing_list.txt.

    ``_background_noise_/`` feeds noise mixing and, with ``--classes 12``, the ``_silence_`` class.
    """
    classes = str(options.extra.get("classes", "all"))
    if classes not in ("all", "12"):
        raise UserInputError(f"--classes must be 'all' or '12', got {classes!r}")
    lists = {}
    for split, fname in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        f = root / fname
        if f.is_file():
            lists.update(
                {line.strip(): split for line in f.read_text().splitlines() if line.strip()}
            )
    records = []
    for path in sorted(root.glob("*/*")):
        word = path.parent.name
        if word.startswith("_") or path.suffix.lower() not in options.extensions:
            continue
        name = f"{word}/{path.name}"
        label = word if classes == "all" or word in CORE_WORDS else UNKNOWN
        records.append(Record(str(path), label, name, lists.get(name, "train"), speaker_of(name)))
    noise = sorted(str(p) for p in (root / NOISE_DIR).glob("*.wav"))
    if classes == "12":
        records += _silence_records(noise, per_class=_mean_class_size(records))
    labels = sorted({r.label for r in records})
    return SourceData(records, labels, "speech_commands", noise_files=noise)


def _mean_class_size(records: list[Record]) -> int:
    words = {r.name.split("/")[0] for r in records}
    return max(1, len(records) // max(1, len(words)))


def _silence_records(noise_files: list[str], per_class: int) -> list[Record]:
    """One-second fragments of the noise files, as many as an average word class has."""
    import soundfile as sf

    spans = []
    for f in noise_files:
        seconds = int(sf.info(f).duration)
        spans += [(f, s) for s in range(seconds)]
    if not spans:
        return []
    step = max(1, len(spans) // per_class)
    records = []
    for f, s in spans[::step][:per_class]:
        name = f"{SILENCE}/{Path(f).stem}_{s}"
        records.append(Record(f"{f}#t={s},{s + 1}", SILENCE, name, hash_split(name)))
    return records


def fetch(options: SourceOptions) -> Path:
    """Download the official v0.02 archive into the cache once (torchaudio's downloader)."""
    from torchaudio.datasets import SPEECHCOMMANDS

    root = cache_dir() / "datasets"
    target = root / "SpeechCommands" / ARCHIVE
    if not detect(target, options):
        root.mkdir(parents=True, exist_ok=True)
        try:
            SPEECHCOMMANDS(str(root), url=ARCHIVE, download=True)
        except (OSError, RuntimeError) as exc:
            raise UserInputError(
                f"cannot download Speech Commands ({exc.__class__.__name__}: {exc}); "
                "pass a local copy with --dataset PATH"
            ) from exc
    return target


register_alias("speech_commands", "audio", fetch)
