"""Few speakers, many takes: ``mmkit audio train`` on recordings of 4 talkers, scored on every
recording of 2 talkers it never heard (issue 18, part 2).

Real speech data is usually a handful of people each saying every word many times (the Free
Spoken Digit Dataset: 6 speakers x 50 takes of each digit, 8 kHz, trimmed, home microphones).
With no such recordings reachable here, the talkers are 6 TTS voices (3 espeak-ng, 3 flite, none
of them a voice variant of another), and each take varies as a person's takes do: its own pitch
and speaking rate (drawn around the talker's), and it is recorded like FSDD: one room and one
microphone per talker (simulated, ``real_conditions.py``), room noise at 20-35 dB SNR, trimmed
tight to the word, 8 kHz 16-bit wav named ``<digit>_<speaker>_<take>.wav``.

The training data is a manifest (``path,label,split,group``: every row ``train``, the talker as
``group``), so mmkit carves its validation set by talker where it can (``data/splits.py``; with
4 talkers one is over a fifth of the data, so it carves items); ``--validation-talker NAME``
validates on one whole training talker instead.
The test set is every take of the 2 held-out talkers.

    python benchmarks/few_speakers.py [--seeds 0 1 2] [--takes 10] [--json] [--set key=value]
"""

from __future__ import annotations

import csv
import functools
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cross_engine import manifest_rows
from benchmarks.cross_engine_data import DIGITS, BenchVoice, speak
from benchmarks.protocol import base_parser, code_version, metric_summary, run_seeds
from benchmarks.real_conditions import (
    add_noise,
    convolve,
    mic_response,
    resample,
    room_rir,
    trim_to_word,
)
from tests.media import speech as tts

DEFAULT_DATA = Path("~/.cache/mmkit/bench/few_speakers")
DATA_VERSION = 1
# (name, engine, voice, base pitch, base speed); the first 4 train, the last 2 are held out
TALKERS = (
    ("ana", "espeak", "en-us+f2", 60, 160),
    ("ben", "flite", "awb", None, 100),
    ("cai", "espeak", "en-gb-x-rp+m3", 40, 150),
    ("dee", "flite", "slt", 180, 100),
    ("eli", "espeak", "en-gb-scotland+m1", 50, 165),
    ("fay", "flite", "kal16", 110, 95),
)
TRAIN_TALKERS = 4


@dataclass(frozen=True)
class FewSpeakersData:
    train_manifest: Path
    train_files: int
    test_manifest: Path
    test_files: int


def take_voice(engine: str, name: str, pitch: int | None, speed: int,
               rng: np.random.Generator) -> tts.Voice:  # fmt: skip
    """One take's voice: the talker's pitch and rate, each moved a little, as a person's are."""
    rate = round(speed * float(rng.uniform(0.85, 1.18)))
    if engine == "espeak":
        return tts.Voice(engine, name, pitch=int(np.clip((pitch or 50) + rng.integers(-12, 13),
                                                         0, 99)), speed=rate)  # fmt: skip
    f0 = None if pitch is None else round(pitch * float(rng.uniform(0.88, 1.12)))
    return tts.Voice(engine, name, pitch=f0, speed=rate)


@functools.lru_cache(maxsize=16)
def home_room(talker: int, seed: int) -> np.ndarray:
    """The impulse response of talker ``talker``'s room (RT60 0.2-0.5 s, 0.3-1 m away)."""
    return room_rir(np.random.default_rng([seed, talker, 2]), (0.2, 0.5), (0.3, 1.0))


def record(word: str, talker: int, take: int, seed: int) -> np.ndarray:
    """``word``, take ``take`` of talker number ``talker``: 8 kHz float samples."""
    _, engine, voice, pitch, speed = TALKERS[talker]
    rng = np.random.default_rng([seed, talker, take, DIGITS.index(word)])
    wave = speak(word, BenchVoice(take_voice(engine, voice, pitch, speed, rng)), take)
    wave = torch.nn.functional.pad(wave, (800, 800 + int(rng.integers(0, 1600))))
    # one room and one microphone per talker: their home
    room = convolve(wave / wave.abs().max().clamp_min(1e-6) * 0.5, home_room(talker, seed))
    mic = mic_response(room, np.random.default_rng([seed, talker, 1]))
    clip = trim_to_word(add_noise(mic, rng, (20.0, 35.0)), 35.0, clean=mic)
    clip = clip / clip.abs().max().clamp_min(1e-6) * float(rng.uniform(0.2, 0.9))
    return resample(clip, 8000).numpy()


def ensure_data(data_dir: str | Path, takes: int, seed: int = 0) -> FewSpeakersData:
    """Write (or reuse) ``<data>/takes<takes>-seed<seed>/``: the recordings and two manifests."""
    root = Path(data_dir).expanduser() / f"v{DATA_VERSION}-takes{takes}-seed{seed}"
    done = root / "data.json"
    if not done.is_file():
        rows: dict[str, list[list[str]]] = {"train": [], "test": []}
        for t, (name, *_rest) in enumerate(TALKERS):
            part = "train" if t < TRAIN_TALKERS else "test"
            for w, word in enumerate(DIGITS):
                for take in range(takes):
                    path = root / "audio" / f"{w}_{name}_{take}.wav"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, record(word, t, take, seed), 8000, subtype="PCM_16")
                    rows[part].append([f"audio/{path.name}", word, part, name])
        for part, part_rows in rows.items():
            with open(root / f"{part}.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["path", "label", "split", "group"])
                writer.writerows(part_rows)
        done.write_text(json.dumps({k: len(v) for k, v in rows.items()}))
    counts = json.loads(done.read_text())
    return FewSpeakersData(root / "train.csv", counts["train"], root / "test.csv", counts["test"])


def with_validation_talker(data: FewSpeakersData, talker: str) -> FewSpeakersData:
    """``data`` with its training manifest's ``talker`` rows marked ``validation``: validation
    by a whole speaker, which mmkit's carving does not choose when one speaker is over a fifth
    of the data (``carve_validation``)."""
    rows = manifest_rows(data.train_manifest)
    if talker not in {r["group"] for r in rows}:
        raise ValueError(f"{talker!r} is not a training talker")
    path = data.train_manifest.with_name(f"train-val-{talker}.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split", "group"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "split": "validation" if r["group"] == talker else "train"})
    return FewSpeakersData(path, data.train_files, data.test_manifest, data.test_files)


def run_mmkit(data: FewSpeakersData, seed: int, epochs: int | None, sets: Sequence[str],
              run_dir: Path) -> dict[str, Any]:  # fmt: skip
    from mmkit.config import build_config
    from mmkit.pipelines import audio

    flags: dict[str, Any] = {"dataset": str(data.train_manifest), "out": str(run_dir), "seed": seed}
    if epochs is not None:
        flags["epochs"] = epochs
    result = audio.train(build_config(audio.AudioConfig, None, flags, sets))
    test_cfg = audio.AudioConfig(dataset=str(data.test_manifest))
    report = audio.evaluate(str(result.best_checkpoint), test_cfg, split="all")
    last = audio.evaluate(str(result.last_checkpoint), test_cfg, split="all")
    spec = json.loads((Path(result.best_checkpoint) / "config.json").read_text())
    rows = manifest_rows(data.test_manifest)
    top = audio.infer([str(data.test_manifest.parent / r["path"]) for r in rows],
                      str(result.best_checkpoint))  # fmt: skip
    per_speaker: dict[str, list[bool]] = {}
    for t, r in zip(top, rows, strict=True):
        per_speaker.setdefault(r["group"], []).append(t["top_k"][0]["label"] == r["label"])
    return {
        "accuracy": round(report["accuracy"], 4),
        "macro_f1": round(report["macro_f1"], 4),
        "num_samples": report["num_samples"],
        "last_accuracy": round(last["accuracy"], 4),
        "last_num_samples": last["num_samples"],
        "val_accuracy": round(result.best_metric.get("accuracy", float("nan")), 4),
        "validation": spec["data"].get("validation"),
        "best_epoch": spec["epoch"],
        "epochs_run": result.epochs,
        "per_speaker": {k: round(sum(v) / len(v), 3) for k, v in sorted(per_speaker.items())},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0], DEFAULT_DATA)
    parser.add_argument("--takes", type=int, default=10, help="takes per talker and digit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--validation-talker",
        default=None,
        help="validate on this training talker (default: mmkit carves validation itself)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    data = ensure_data(args.data, args.takes)
    if args.validation_talker:
        data = with_validation_talker(data, args.validation_talker)
    out = args.out or Path(tempfile.mkdtemp(prefix="mmkit-few-speakers-"))
    seeds = run_seeds(
        lambda s: run_mmkit(data, s, args.epochs, args.set, out / f"seed{s}"),
        args.seeds,
        data.test_files,
        "few-speakers",
    )
    report = {
        "recipe": "mmkit",
        "code": code_version(),
        "settings": {"set": args.set, "validation_talker": args.validation_talker},
        "epochs": args.epochs,
        "data": {
            "dir": str(data.train_manifest.parent),
            "takes": args.takes,
            "train_talkers": [t[0] for t in TALKERS[:TRAIN_TALKERS]],
            "test_talkers": [t[0] for t in TALKERS[TRAIN_TALKERS:]],
            "train_files": data.train_files,
            "test_files": data.test_files,
        },
        "num_samples": data.test_files,
        **metric_summary(seeds),
        "seeds": seeds,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        acc = report["accuracy"]
        per_seed = " / ".join(f"{s['accuracy']:.3f}" for s in seeds)
        print(f"few speakers {args.set}: {acc['mean']:.3f} ± {acc['std']:.3f} ({per_seed}), "
              f"n={data.test_files}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
