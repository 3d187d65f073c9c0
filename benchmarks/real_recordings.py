"""Real recordings of spoken digits, when a folder of them is at hand, as one more test set.

Two layouts are read:

- the Free Spoken Digit Dataset's: ``<digit>_<speaker>_<take>.wav`` (``7_jackson_32.wav``),
  anywhere below the folder; the set such files come from is CC BY-SA 4.0;
- Asterisk's prompts: ``digits/<n>.wav`` for n = 0..9 (Debian's
  ``asterisk-core-sounds-en-wav`` installs them under ``/usr/share/asterisk/sounds/en``: one
  speaker, Allison Smith, 8 kHz, CC BY-SA 3.0).

Every file found is listed (``path,label,group``: the speaker is the group) in a manifest written
under ``<data>/real/``; nothing of the training data comes from these speakers.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cross_engine_data import DIGITS

FSDD_NAME = re.compile(r"^([0-9])_([A-Za-z]+)_([0-9]+)\.wav$")
ASTERISK_DEFAULT = Path("/usr/share/asterisk/sounds/en")


@dataclass(frozen=True)
class RealSet:
    """The manifest of the real recordings found, and how many files and speakers it lists."""

    name: str
    manifest: Path
    files: int
    speakers: tuple[str, ...]


def find_recordings(folder: str | Path) -> list[tuple[Path, str, str]]:
    """``(path, digit word, speaker)`` for every recording of a digit below ``folder``."""
    folder = Path(folder).expanduser()
    found = []
    for path in sorted(folder.rglob("*.wav")):
        match = FSDD_NAME.match(path.name)
        if match:
            found.append((path.resolve(), DIGITS[int(match.group(1))], match.group(2)))
        elif path.parent.name == "digits" and path.stem in "0123456789" and len(path.stem) == 1:
            speaker = path.resolve().parent.parent.name  # e.g. en_US_f_Allison
            found.append((path.resolve(), DIGITS[int(path.stem)], speaker))
    return found


def ensure_real(folder: str | Path, data_dir: str | Path) -> RealSet:
    """The manifest of the recordings below ``folder`` (rewritten each call: it is small)."""
    found = find_recordings(folder)
    if not found:
        raise FileNotFoundError(
            f"{folder}: no recordings of digits (<digit>_<speaker>_<n>.wav or digits/<n>.wav)"
        )
    key = hashlib.sha1(str(Path(folder).expanduser().resolve()).encode()).hexdigest()[:8]
    root = Path(data_dir).expanduser() / "real" / key
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "group"])
        writer.writerows([str(p), label, speaker] for p, label, speaker in found)
    speakers = tuple(sorted({s for _, _, s in found}))
    return RealSet(f"real-{'+'.join(speakers)}"[:60], manifest, len(found), speakers)
