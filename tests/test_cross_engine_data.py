"""The cross-engine benchmark's data generator (benchmarks/cross_engine_data.py) on a tiny set:
real espeak-ng/flite speech, training clips as a user would record them, test clips in formats the
training set never has, written once and reused."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmarks.cross_engine_data import (
    ENGINES,
    TEST_FORMATS,
    TEST_SECONDS,
    engine_voices,
    ensure_data,
    recording_clip,
    tiny_spec,
)
from benchmarks.protocol import summarize


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cross_engine")
    return root, ensure_data(root, tiny_spec())


def test_training_folders_are_one_engine_1s_16k_wav(tiny) -> None:
    _, data = tiny
    for engine in ENGINES:
        files = sorted(data[engine].train_dir.rglob("*.wav"))
        assert len(files) == data[engine].train_files == 2 * 2  # 2 voices x 2 words x 1 take
        assert {f.parent.name for f in files} == {"zero", "one"}
        assert all(f.name.startswith(f"{engine}-") for f in files)
        for f in files:
            info = sf.info(str(f))
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000)
            assert info.subtype == "PCM_16"
            wave, _ = sf.read(str(f))
            assert np.abs(wave).max() > 0.05  # speech, not silence


def test_test_sets_hold_every_file_in_unseen_formats(tiny) -> None:
    _, data = tiny
    formats = {f.name: f for f in TEST_FORMATS}
    for engine in ENGINES:
        test = data[engine]
        with open(test.test_manifest, newline="") as f:
            rows = list(csv.DictReader(f))
        files = [
            p for p in test.test_dir.rglob("*") if p.suffix in {".mp3", ".flac", ".ogg", ".wav"}
        ]
        assert len(rows) == len(files) == test.test_files == 4
        assert set(rows[0]) == {"path", "label", "format"}  # no split: eval scores every row
        assert all(Path(r["path"]).parts[0] == r["label"] for r in rows)
        for row in rows:
            fmt = formats[row["format"]]
            info = sf.info(str(test.test_dir / row["path"]))
            assert row["path"].endswith("." + fmt.ext)
            assert info.samplerate == fmt.sample_rate
            assert info.channels == (2 if fmt.stereo else 1)
            if fmt.subtype:
                assert info.subtype == fmt.subtype
            assert TEST_SECONDS[0] - 0.01 <= info.frames / info.samplerate <= TEST_SECONDS[1] + 0.06
        assert len({r["format"] for r in rows}) > 1


def test_data_is_cached_and_regenerated_when_the_spec_changes(tiny) -> None:
    root, data = tiny
    some = next(data["flite"].train_dir.rglob("*.wav"))
    stamp = some.stat().st_mtime_ns
    assert ensure_data(root, tiny_spec()) == data
    assert some.stat().st_mtime_ns == stamp
    more = ensure_data(root, replace(tiny_spec(), takes=2))
    assert more["flite"].train_files == 8
    assert len(list(more["flite"].train_dir.rglob("*.wav"))) == 8


def test_recording_clip_is_seeded_short_and_noisy() -> None:
    silence = torch.zeros(2000)
    word = torch.cat([silence, torch.sin(torch.linspace(0, 2000, 4000)) * 0.8, silence])  # 0.5 s
    a = recording_clip(word, np.random.default_rng(3))
    b = recording_clip(word, np.random.default_rng(3))
    c = recording_clip(word, np.random.default_rng(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.5 * 16000 <= a.numel() <= TEST_SECONDS[1] * 16000
    assert 0 < a[:1000].abs().max() < 0.05  # faint noise where nothing is spoken


def test_engines_have_many_distinct_voices() -> None:
    for engine in ENGINES:
        voices = engine_voices(engine)
        assert len(voices) >= 20
        assert len({v.id for v in voices}) == len(voices)
        assert {v.voice.engine for v in voices} == {engine}


def test_summary_of_seeds() -> None:
    assert summarize([0.5, 0.7, 0.6]) == {"mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7}
