"""Generate the embedded spoken-word demo set in ``examples/audio/data/``.

    python -m examples.audio.make_data [--out DIR]

Eight words spoken by espeak-ng and flite voices, 16 kHz mono FLAC, in a folder-per-class layout
with ``train/ val/ test/`` levels. Validation and test speakers are held out of training, so
accuracy on ``test`` measures recognising the word in voices the model has never heard.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tests.media.speech import Voice, VoiceSplit, default_voices, make_word_set, split_voices

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off")
SAMPLE_RATE = 16000
TRAIN_TAKES = 2
SPLIT_DIRS = {"train": "train", "validation": "val", "test": "test"}


def demo_split(voices: list[Voice]) -> VoiceSplit:
    """Hold out 2 + 3 espeak speakers and 1 + 1 flite speakers for validation + test."""
    espeak = split_voices(
        [v for v in voices if v.engine == "espeak"], validation_per_engine=2, test_per_engine=3
    )
    flite = split_voices([v for v in voices if v.engine == "flite"])
    return VoiceSplit(
        espeak.train + flite.train, espeak.validation + flite.validation, espeak.test + flite.test
    )


def make_demo_data(out: Path) -> dict[str, int]:
    """Write the demo set under ``out`` (replacing an earlier one); files per split."""
    split = demo_split(default_voices())
    counts = {}
    for name, folder in SPLIT_DIRS.items():
        target = out / folder
        if target.exists():
            shutil.rmtree(target)
        voices = getattr(split, name)
        takes = TRAIN_TAKES if name == "train" else 1
        items = make_word_set(
            target, WORDS, voices, sample_rate=SAMPLE_RATE, ext="flac", takes=takes
        )
        counts[folder] = len(items)
    lines = [
        "# Spoken-word demo data",
        "",
        "Made by `python -m examples.audio.make_data` (espeak-ng and flite), 16 kHz mono FLAC.",
        f"Words: {', '.join(WORDS)}. Files are `<split>/<word>/<voice id>_<take>.flac`.",
        "Validation and test speakers never occur in training.",
        "",
    ]
    for name, folder in SPLIT_DIRS.items():
        voices = ", ".join(f"`{v.id}`" for v in getattr(split, name))
        lines.append(f"- `{folder}/` ({counts[folder]} files): {voices}")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    counts = make_demo_data(args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {sum(counts.values())} files {counts} to {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
