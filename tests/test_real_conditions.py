"""The real-recording pieces of the audio protocols (issue 18): the recording conditions of
benchmarks/real_conditions.py, the real-recording reader of benchmarks/real_recordings.py, the
few-speakers data of benchmarks/few_speakers.py, and the cross-engine protocol scoring them.

The generators are slow (real espeak-ng/flite speech, simulated rooms, ffmpeg codecs):
``pytest -m slow tests/test_real_conditions.py``. Figures: benchmarks/RESULTS-audio.md.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.real_recordings import ensure_real, find_recordings

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("zero", "one")


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _tone(path: Path, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.3 * np.sin(np.arange(rate // 2) / 3.0), rate, subtype="PCM_16")


def test_real_recordings_are_read_by_speaker_from_both_layouts(tmp_path: Path) -> None:
    _tone(tmp_path / "fsdd" / "recordings" / "7_jackson_32.wav")
    _tone(tmp_path / "fsdd" / "recordings" / "0_theo_1.wav")
    _tone(tmp_path / "fsdd" / "recordings" / "notes.wav")  # not a digit recording
    _tone(tmp_path / "ast" / "en_US_f_Allison" / "digits" / "3.wav")
    _tone(tmp_path / "ast" / "en_US_f_Allison" / "digits" / "30.wav")  # "thirty": not a digit
    found = {(p.name, label, who) for p, label, who in find_recordings(tmp_path)}
    assert found == {
        ("7_jackson_32.wav", "seven", "jackson"),
        ("0_theo_1.wav", "zero", "theo"),
        ("3.wav", "three", "en_US_f_Allison"),
    }
    real = ensure_real(tmp_path, tmp_path / "data")
    assert real.files == 3 and real.speakers == ("en_US_f_Allison", "jackson", "theo")
    rows = _rows(real.manifest)
    assert {r["group"] for r in rows} == set(real.speakers)
    assert all(Path(r["path"]).is_file() for r in rows)
    with pytest.raises(FileNotFoundError, match="no recordings of digits"):
        ensure_real(tmp_path / "fsdd" / "none", tmp_path / "data")


@pytest.mark.slow
def test_conditions_are_written_once_in_their_formats(tmp_path: Path) -> None:
    pytest.importorskip("pyroomacoustics")
    from benchmarks.real_conditions import CONDITIONS, ConditionSpec, ensure_conditions

    spec = ConditionSpec(voices=2, words=WORDS)
    sets = {c.name: c for c in ensure_conditions(tmp_path, "flite", spec)}
    assert tuple(sets) == CONDITIONS
    info: dict[str, list[sf._SoundFileInfo]] = {}
    for name, cond in sets.items():
        rows = _rows(cond.manifest)
        assert cond.files == len(rows) == 2 * len(WORDS)
        assert {r["condition"] for r in rows} == {name}
        assert {r["label"] for r in rows} == set(WORDS)
        info[name] = [sf.info(str(cond.manifest.parent / r["path"])) for r in rows]
    rate = {name: {i.samplerate for i in infos} for name, infos in info.items()}
    assert rate["phone-mulaw"] == rate["codec-lowrate"] == rate["home-8k"] == {8000}
    assert rate["reference"] == rate["reverb"] == {16000}
    assert {i.subtype for i in info["phone-mulaw"]} == {"ULAW"}

    def seconds(name: str) -> list[float]:
        return [i.frames / i.samplerate for i in info[name]]

    # trimmed to the word: shorter than the word with room tone around it
    assert all(t < r for t, r in zip(seconds("trim-8k"), seconds("reference"), strict=True))
    assert seconds("tempo") != seconds("reference")
    peaks = [
        float(np.abs(sf.read(str(sets["level"].manifest.parent / r["path"]))[0]).max())
        for r in _rows(sets["level"].manifest)
    ]
    assert min(peaks) < 0.04 or max(peaks) > 0.99  # quiet or clipped, never the reference's 0.5
    stamp = sets["reverb"].manifest.stat().st_mtime_ns
    again = ensure_conditions(tmp_path, "flite", spec)
    assert [c.files for c in again] == [c.files for c in sets.values()]
    assert sets["reverb"].manifest.stat().st_mtime_ns == stamp  # reused, not rewritten


@pytest.mark.slow
def test_few_speakers_data_holds_out_whole_talkers(tmp_path: Path) -> None:
    pytest.importorskip("pyroomacoustics")
    from benchmarks.few_speakers import (
        TALKERS,
        TRAIN_TALKERS,
        ensure_data,
        with_validation_talker,
    )

    data = ensure_data(tmp_path, takes=1)
    train, test = _rows(data.train_manifest), _rows(data.test_manifest)
    assert (data.train_files, data.test_files) == (TRAIN_TALKERS * 10, (len(TALKERS) - 4) * 10)
    assert {r["split"] for r in train} == {"train"}
    assert {r["group"] for r in train} == {t[0] for t in TALKERS[:TRAIN_TALKERS]}
    assert {r["group"] for r in test} == {t[0] for t in TALKERS[TRAIN_TALKERS:]}
    for r in train[:5] + test[:5]:
        i = sf.info(str(data.train_manifest.parent / r["path"]))
        assert i.samplerate == 8000 and 0.2 < i.frames / 8000 < 1.2
    by_talker = _rows(with_validation_talker(data, "ben").train_manifest)
    assert {r["group"] for r in by_talker if r["split"] == "validation"} == {"ben"}
    assert {r["split"] for r in by_talker if r["group"] != "ben"} == {"train"}
    with pytest.raises(ValueError, match="'eli' is not a training talker"):
        with_validation_talker(data, "eli")


@pytest.mark.slow
def test_cross_engine_protocol_scores_conditions_and_real_recordings(tmp_path: Path) -> None:
    pytest.importorskip("pyroomacoustics")
    real = tmp_path / "real"
    for digit in range(10):  # stand-ins for a real folder: FSDD names, 8 kHz
        _tone(real / f"{digit}_someone_0.wav")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "cross_engine.py"), "--json"]
    cmd += ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--voices", "2"]
    cmd += ["--seeds", "0", "1", "--epochs", "1", "--direction", "espeak-flite"]
    cmd += ["--set", "backbone=audio_cnn_test", "--conditions", "reference", "trim-8k"]
    cmd += ["--real", str(real)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    d = report["directions"]["espeak-flite"]
    assert set(d["conditions"]) == {"reference", "trim-8k", "real-someone"}
    assert d["conditions"]["reference"]["num_samples"] == 2 * 10
    assert d["conditions"]["real-someone"]["num_samples"] == 10
    for seed in d["seeds"]:
        assert set(seed["conditions"]) == set(d["conditions"])
        assert all(0 <= c["accuracy"] <= 1 for c in seed["conditions"].values())
    assert set(d["conditions"]["trim-8k"]["accuracy"]) == {"mean", "std", "min", "max"}
    # the same runs scored again from their checkpoints: the same figures
    (tmp_path / "report.json").write_text(proc.stdout)
    cmd += ["--rescore", str(tmp_path / "report.json")]
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    assert again.returncode == 0, again.stderr[-2000:]
    rescored = json.loads(again.stdout)["directions"]["espeak-flite"]
    assert rescored["conditions"] == d["conditions"]
