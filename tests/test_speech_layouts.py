"""tests.media.speech and speech_layouts: the test media are what they claim to be."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
import torch

from mmkit.io.audio import info, load_audio
from tests.media.speech import (
    SpeechToolError,
    Voice,
    default_voices,
    make_word_set,
    split_voices,
    tool_path,
    write_audio,
    write_mp3_ffmpeg,
)
from tests.media.speech_layouts import CORE_WORDS, speaker_code


def test_default_voices_are_varied_and_ids_stable():
    voices = default_voices()
    ids = [v.id for v in voices]
    assert len(set(ids)) == len(ids) >= 16
    assert {v.engine for v in voices} == {"espeak", "flite"}
    assert {v.name for v in voices if v.engine == "flite"} >= {"kal", "awb", "rms", "slt"}
    assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") for i in ids)
    voice = Voice("espeak", "en-gb-x-rp+m3", pitch=60, speed=150)
    assert voice.id == "espeak-en-gb-x-rp-m3-p60-s150"
    assert Voice("flite", "kal16", pitch=120).speaker == Voice("flite", "kal").speaker


def test_held_out_speakers_never_train(held_out_voices):
    train = {v.speaker for v in held_out_voices.train}
    for held in (held_out_voices.validation, held_out_voices.test):
        assert {v.engine for v in held} == {"espeak", "flite"}
        assert not {v.speaker for v in held} & train
    assert not {v.id for v in held_out_voices.validation} & {v.id for v in held_out_voices.test}
    with pytest.raises(ValueError, match="cannot hold out"):
        split_voices(default_voices(), test_per_engine=4)


def test_word_set_layout(speech_set):
    assert len(speech_set.words) >= 6
    assert len(speech_set.items) == len(speech_set.words) * len(default_voices())
    for item in speech_set.items:
        assert item.path == speech_set.root / item.word / f"{item.voice}_{item.take}.wav"
        meta = sf.info(item.path)
        assert (meta.samplerate, meta.channels) == (16000, 1)
        assert 0.15 < meta.duration < 1.5  # one word, silence trimmed


def test_word_set_is_deterministic_with_varied_takes(tmp_path, speech_set):
    voice = Voice("flite", "slt")
    first = make_word_set(tmp_path / "a", ["left"], [voice], takes=3, ext="flac")
    again = make_word_set(tmp_path / "b", ["left"], [voice], takes=3, ext="flac")
    assert [i.path.name for i in first] == [f"{voice.id}_{n}.flac" for n in range(3)]
    waves = [load_audio(i.path, 16000) for i in first]
    assert all(torch.equal(w, load_audio(j.path, 16000)) for w, j in zip(waves, again, strict=True))
    assert len({w.numel() for w in waves}) == 3  # takes differ in rate
    reference = next(i.path for i in speech_set.items if i.voice == voice.id and i.word == "left")
    assert torch.equal(waves[0], load_audio(reference, 16000))


def test_spoken_words_differ_across_voices_and_words(speech_set):
    by_key = {(i.word, i.voice): load_audio(i.path, 16000) for i in speech_set.items}
    yes = by_key[("yes", "espeak-en-us")]
    assert not torch.equal(yes, by_key[("no", "espeak-en-us")])
    assert not torch.equal(yes, by_key[("yes", "flite-slt")])


def test_missing_engine_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SpeechToolError, match="espeak-ng not found on PATH; install it"):
        tool_path("espeak")


def test_write_audio_formats(tmp_path):
    wave = 0.5 * torch.sin(torch.arange(8000) * 2 * torch.pi * 440 / 16000)
    for name, fmt, subtype in (
        ("a.wav", "WAV", "PCM_16"),
        ("a.flac", "FLAC", "PCM_16"),
        ("a.ogg", "OGG", "VORBIS"),
        ("a.mp3", "MP3", "MPEG_LAYER_III"),
    ):
        meta = sf.info(write_audio(tmp_path / name, wave, 16000))
        assert (meta.format, meta.subtype, meta.channels) == (fmt, subtype, 1)
    assert (
        sf.info(write_audio(tmp_path / "s.wav", wave, 16000, "PCM_24", stereo=True)).channels == 2
    )
    with pytest.raises(ValueError, match=r"unsupported audio extension '\.aac'"):
        write_audio(tmp_path / "a.aac", wave, 16000)


def test_ffmpeg_mp3_fallback_encodes_real_mp3(tmp_path):
    wave = 0.5 * torch.sin(torch.arange(16000) * 2 * torch.pi * 440 / 16000)
    path = write_mp3_ffmpeg(tmp_path / "f.mp3", wave[:, None].numpy(), 16000)
    decoded = load_audio(path, 16000)
    assert info(path).format == "MP3"
    assert abs(decoded.numel() - 16000) < 2000
    assert decoded.abs().max() == pytest.approx(0.5, abs=0.05)


def test_speech_commands_layout(speech_sources, speech_set):
    root = speech_sources["speech_commands"]
    validation = (root / "validation_list.txt").read_text().split()
    testing = (root / "testing_list.txt").read_text().split()
    split = speech_set.split
    assert len(validation) == len(speech_set.words) * len(split.validation)
    assert len(testing) == len(speech_set.words) * len(split.test)
    held = {speaker_code(v.id) for v in split.validation + split.test}
    train_codes = {speaker_code(v.id) for v in split.train}
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*_nohash_*.wav"))
    assert len(files) == len(speech_set.items)
    assert set(validation) | set(testing) <= set(files)
    for rel in files:
        speaker = rel.split("/")[1].split("_nohash_")[0]
        assert (rel in validation or rel in testing) == (speaker in held)
        assert speaker in held | train_codes
    noise = sorted((root / "_background_noise_").glob("*.wav"))
    assert [p.name for p in noise] == ["brown_noise.wav", "pink_noise.wav", "white_noise.wav"]
    for path in noise:
        meta = info(path)
        assert (meta.sample_rate, meta.duration) == (16000, 3.0)
        assert load_audio(path, 16000).std() > 0.01


@pytest.mark.parametrize("name", ["csv", "jsonl", "csv_nosplit"])
def test_manifests(speech_sources, speech_set, name):
    path = speech_sources[name]
    with path.open() as f:
        rows = list(csv.DictReader(f)) if path.suffix == ".csv" else [json.loads(x) for x in f]
    assert len(rows) == len(speech_set.items)
    mapping = speech_set.split.mapping()
    for row, item in zip(rows, speech_set.items, strict=True):
        assert not Path(row["path"]).is_absolute()
        assert (path.parent / row["path"]).resolve() == item.path.resolve()
        assert row["label"] == item.word
        assert row.get("split") == (None if name == "csv_nosplit" else mapping[item.voice])


@pytest.mark.parametrize("name", ["hf_parquet", "hf_disk"])
def test_hf_layouts_read_back_with_datasets(speech_sources, speech_set, name):
    import datasets

    root = speech_sources[name]
    if name == "hf_parquet":
        assert sorted(p.name for p in root.iterdir()) == [
            f"{s}-00000-of-00001.parquet" for s in ("test", "train", "validation")
        ]
        dd = datasets.load_dataset("parquet", data_dir=str(root))
    else:
        dd = datasets.load_from_disk(str(root))
    assert set(dd) == {"train", "validation", "test"}
    split = speech_set.split
    n = len(speech_set.words)
    sizes = {
        "train": len(split.train),
        "validation": len(split.validation),
        "test": len(split.test),
    }
    assert {k: len(v) for k, v in dd.items()} == {k: n * v for k, v in sizes.items()}
    features = dd["train"].features
    assert features["label"].names == sorted(speech_set.words)
    assert isinstance(features["audio"], datasets.Audio) and features["audio"].decode is False
    assert {k: features[k].dtype for k in ("file", "is_unknown", "speaker_id", "utterance_id")} == {
        "file": "string",
        "is_unknown": "bool",
        "speaker_id": "string",
        "utterance_id": "int8",
    }
    by_file = {f"{i.word}/{speaker_code(i.voice)}_nohash_{i.take}.wav": i for i in speech_set.items}
    labels = Counter()
    for row in dd["test"]:
        item = by_file[row["file"]]
        word = features["label"].int2str(row["label"])
        labels[word] += 1
        assert word == item.word and row["file"].startswith(f"{word}/")
        # save_to_disk embeds the bytes and keeps only the base name of the path
        assert row["audio"]["path"] in (row["file"], Path(row["file"]).name)
        assert row["is_unknown"] == (word not in CORE_WORDS)
        assert row["speaker_id"] == speaker_code(item.voice)
        torch.testing.assert_close(
            load_audio(row["audio"]["bytes"], 16000), load_audio(item.path, 16000)
        )
    assert set(labels) == set(speech_set.words)


def test_hub_style_parquet_keeps_decode_on_in_metadata(speech_sources):
    import datasets

    dd = datasets.load_dataset("parquet", data_dir=str(speech_sources["hf_parquet_hub"]))
    assert dd["train"].features["audio"].decode is True
    row = dd["train"].cast_column("audio", datasets.Audio(decode=False))[0]
    assert set(row["audio"]) == {"bytes", "path"} and row["audio"]["bytes"][:4] == b"RIFF"


def test_split_folders(speech_sources, speech_set):
    root = speech_sources["folder_splits"]
    assert sorted(p.name for p in root.iterdir()) == ["test", "train", "val"]
    counts = {d: len(list((root / d).glob("*/*.wav"))) for d in ("train", "val", "test")}
    split = speech_set.split
    n = len(speech_set.words)
    sizes = {"train": len(split.train), "val": len(split.validation), "test": len(split.test)}
    assert counts == {k: n * v for k, v in sizes.items()}
