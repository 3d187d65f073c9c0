"""mmkit.data.sources / splits / hf / speech_commands: ``--dataset SRC`` layouts -> records.

These are layout tests: the wav files are short noise bursts written with soundfile, no decoder
is exercised.
"""

from __future__ import annotations

import collections
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import mmkit.data.layouts.speech_commands as sc
from mmkit.data.hf_tables import RowBytes, stream_sources
from mmkit.data.records import Record, SourceData, SourceOptions, Unusable
from mmkit.data.sources import resolve
from mmkit.data.splits import hash_split, normalize_split
from mmkit.errors import UserInputError

EXTS = (".wav", ".flac")
RATE = 8000


def _opts(**kw) -> SourceOptions:
    return SourceOptions(modality="audio", extensions=EXTS, **kw)


def _wav_bytes(seed: int, seconds: float = 0.05) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(
        buf,
        rng.uniform(-0.5, 0.5, int(RATE * seconds)).astype(np.float32),
        RATE,
        "PCM_16",
        format="WAV",
    )
    return buf.getvalue()


def _wav(path: Path, seed: int = 0, seconds: float = 0.05) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_wav_bytes(seed, seconds))
    return path


def _by_name(data: SourceData) -> dict[str, Record]:
    return {r.name: r for r in data.records}


# -- splits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("train", "train"),
        ("Training", "train"),
        ("val", "validation"),
        ("valid", "validation"),
        ("dev", "validation"),
        (" validation ", "validation"),
        ("TEST", "test"),
        ("testing", "test"),
        ("holdout", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_split(given, expected):
    assert normalize_split(given) == expected


def test_hash_split_deterministic_and_proportioned():
    keys = [f"speaker{i:04d}" for i in range(3000)]
    first = [hash_split(k) for k in keys]
    assert first == [hash_split(k) for k in keys]
    counts = collections.Counter(first)
    assert set(counts) == {"train", "validation", "test"}
    assert abs(counts["validation"] / 3000 - 0.1) < 0.03
    assert abs(counts["test"] / 3000 - 0.1) < 0.03
    # fractions are honoured and adding keys never moves old ones
    assert {hash_split(k, validation=0.0, test=0.0) for k in keys} == {"train"}
    assert {hash_split(k, validation=1.0, test=0.0) for k in keys} == {"validation"}


def test_with_splits_groups_and_keeps_given_splits():
    records = [
        Record(f"/x/{g}_{i}.wav", "a", f"{g}_{i}.wav", None, f"grp{g}")
        for g in range(40)
        for i in range(3)
    ]
    records.append(Record("/x/fixed.wav", "a", "fixed.wav", "test", "grp0"))
    data = SourceData(records, ["a"], "manifest").with_splits()
    by_group = collections.defaultdict(set)
    for r in data.records[:-1]:
        by_group[r.group].add(r.split)
        assert r.split == hash_split(r.group)
    assert all(len(s) == 1 for s in by_group.values())  # one split per group
    assert len({next(iter(s)) for s in by_group.values()}) >= 2  # not all in one split
    assert data.records[-1].split == "test"  # a given split is kept


# -- folder per class ------------------------------------------------------------------------


def test_folder_per_class(tmp_path):
    for label in ("dog", "cat"):
        for i in range(3):
            _wav(tmp_path / label / f"{label}{i}.wav", i)
    _wav(tmp_path / "cat" / "loud.FLAC", 9)  # extension matched case-insensitively
    _wav(tmp_path / "_background_noise_" / "noise.wav", 7)  # reserved folder: not a class
    _wav(tmp_path / ".hidden" / "h.wav", 8)  # hidden: skipped
    _wav(tmp_path / "toplevel.wav", 6)  # no class folder: skipped
    (tmp_path / "dog" / "notes.txt").write_text("not audio")

    data = resolve(str(tmp_path), _opts())
    assert data.kind == "folder"
    assert data.labels == ["cat", "dog"]
    names = sorted(r.name for r in data.records)
    assert names == sorted(
        [f"dog/dog{i}.wav" for i in range(3)]
        + [f"cat/cat{i}.wav" for i in range(3)]
        + ["cat/loud.FLAC"]
    )
    for r in data.records:
        assert r.label == r.name.split("/")[0]
        assert Path(r.source).is_file() and Path(r.source).is_absolute()
        assert r.split == hash_split(r.name)  # no split level: hash split by file name


def test_folder_with_split_level(tmp_path):
    _wav(tmp_path / "train" / "cat" / "a.wav")
    _wav(tmp_path / "train" / "dog" / "b.wav")
    _wav(tmp_path / "val" / "cat" / "c.wav")
    _wav(tmp_path / "test" / "dog" / "d.wav")
    data = resolve(str(tmp_path), _opts())
    got = {r.name: (r.label, r.split) for r in data.records}
    assert got == {
        "train/cat/a.wav": ("cat", "train"),
        "train/dog/b.wav": ("dog", "train"),
        "val/cat/c.wav": ("cat", "validation"),
        "test/dog/d.wav": ("dog", "test"),
    }
    assert data.labels == ["cat", "dog"]


def test_empty_folder_is_user_error(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "x.txt").write_text("no audio here")
    with pytest.raises(UserInputError, match="no audio files found"):
        resolve(str(tmp_path), _opts())


# -- manifests -------------------------------------------------------------------------------


def test_csv_manifest(tmp_path):
    _wav(tmp_path / "clips" / "a.wav")
    _wav(tmp_path / "clips" / "b.wav")
    _wav(tmp_path / "clips" / "c.wav")
    elsewhere = _wav(tmp_path / "abs" / "d.wav")
    (tmp_path / "data.csv").write_text(
        "path,label,split\n"
        "clips/a.wav,yes,train\n"
        "clips/b.wav,no,val\n"
        "clips/c.wav,no,\n"
        f"{elsewhere},yes,TEST\n"
    )
    data = resolve(str(tmp_path / "data.csv"), _opts())
    assert data.kind == "manifest"
    assert data.labels == ["no", "yes"]
    recs = _by_name(data)
    assert recs["clips/a.wav"].source == str(tmp_path / "clips" / "a.wav")  # relative to manifest
    assert (recs["clips/a.wav"].label, recs["clips/a.wav"].split) == ("yes", "train")
    assert recs["clips/b.wav"].split == "validation"
    assert recs["clips/c.wav"].split == hash_split("clips/c.wav")  # empty split: hashed
    assert recs[str(elsewhere)].source == str(elsewhere)  # absolute path kept
    assert recs[str(elsewhere)].split == "test"


def test_manifest_found_from_another_cwd(tmp_path, monkeypatch):
    _wav(tmp_path / "m" / "a.wav")
    (tmp_path / "m" / "list.csv").write_text("path,label\na.wav,x\n")
    monkeypatch.chdir(tmp_path)
    data = resolve("m/list.csv", _opts())
    assert Path(data.records[0].source).resolve() == (tmp_path / "m" / "a.wav").resolve()


def test_jsonl_manifest_with_groups(tmp_path):
    lines = []
    for g in range(30):
        for i in range(3):
            _wav(tmp_path / f"g{g}_{i}.wav", g * 3 + i)
            lines.append(json.dumps({"path": f"g{g}_{i}.wav", "label": f"w{i}", "group": f"s{g}"}))
    lines.insert(5, "")  # blank lines are fine
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    data = resolve(str(tmp_path / "m.jsonl"), _opts())
    assert data.labels == ["w0", "w1", "w2"]
    assert len(data.records) == 90
    per_group = collections.defaultdict(set)
    for r in data.records:
        per_group[r.group].add(r.split)
        assert r.split == hash_split(r.group)
    assert all(len(s) == 1 for s in per_group.values())
    assert {next(iter(s)) for s in per_group.values()} >= {"train", "validation"}


def test_csv_bad_split_names_file_and_line(tmp_path):
    _wav(tmp_path / "a.wav")
    path = tmp_path / "data.csv"
    path.write_text("path,label,split\na.wav,x,train\na.wav,x,holdout\n")
    with pytest.raises(UserInputError) as info:
        resolve(str(path), _opts())
    assert f"{path}:3:" in str(info.value)  # header is line 1
    assert "'holdout'" in str(info.value)


def test_jsonl_bad_split_and_bad_json_name_line(tmp_path):
    _wav(tmp_path / "a.wav")
    path = tmp_path / "data.jsonl"
    path.write_text(
        '{"path": "a.wav", "label": "x"}\n{"path": "a.wav", "label": "x", "split": "eval"}\n'
    )
    with pytest.raises(UserInputError, match=rf"{path}:2: unknown split 'eval'"):
        resolve(str(path), _opts())
    path.write_text('{"path": "a.wav", "label": "x"}\n{"path": "a.wav", "label":\n')
    with pytest.raises(UserInputError, match=rf"{path}:2: invalid JSON"):
        resolve(str(path), _opts())


def test_manifest_missing_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("file,label\na.wav,x\n")
    with pytest.raises(UserInputError, match=rf"{path}:2: .*'path' and 'label'"):
        resolve(str(path), _opts())


# -- Speech Commands -------------------------------------------------------------------------


@pytest.fixture
def speech_commands_root(tmp_path):
    root = tmp_path / "sc"
    speakers = ["0a1b2c3d", "1f2e3d4c", "99aa88bb"]
    for word in ("yes", "no", "bed", "happy"):
        for n, spk in enumerate(speakers):
            _wav(root / word / f"{spk}_nohash_{n % 2}.wav", n)
    _wav(root / sc.NOISE_DIR / "white_noise.wav", 1, seconds=3.5)
    _wav(root / sc.NOISE_DIR / "pink_noise.wav", 2, seconds=2.2)
    (root / sc.NOISE_DIR / "README.md").write_text("noise")
    (root / "validation_list.txt").write_text(
        "yes/1f2e3d4c_nohash_1.wav\nbed/1f2e3d4c_nohash_1.wav\n"
    )
    (root / "testing_list.txt").write_text("no/99aa88bb_nohash_0.wav\n\n")
    (root / "LICENSE").write_text("cc-by")
    return root


def test_speech_commands_all_words(speech_commands_root):
    root = speech_commands_root
    data = resolve(str(root), _opts())
    assert data.kind == "speech_commands"
    assert data.labels == ["bed", "happy", "no", "yes"]
    recs = _by_name(data)
    assert len(recs) == 12
    assert recs["yes/1f2e3d4c_nohash_1.wav"].split == "validation"
    assert recs["bed/1f2e3d4c_nohash_1.wav"].split == "validation"
    assert recs["no/99aa88bb_nohash_0.wav"].split == "test"
    assert recs["yes/0a1b2c3d_nohash_0.wav"].split == "train"  # in neither list
    assert sum(r.split == "train" for r in data.records) == 9
    for name, r in recs.items():
        assert r.group == name.split("/")[1].split("_nohash_")[0]  # speaker id
        assert r.source == str(root / name)
    assert sorted(Path(f).name for f in data.noise_files) == ["pink_noise.wav", "white_noise.wav"]


def test_speech_commands_12_classes(speech_commands_root):
    root = speech_commands_root
    data = resolve(str(root), _opts(extra={"classes": "12"}))
    assert data.labels == ["_silence_", "_unknown_", "no", "yes"]
    words = [r for r in data.records if r.label != sc.SILENCE]
    unknown = {r.name for r in words if r.label == sc.UNKNOWN}
    assert unknown == {r.name for r in words if r.name.split("/")[0] in ("bed", "happy")}
    assert len(unknown) == 6
    # the list-given split survives the relabelling
    assert _by_name(data)["bed/1f2e3d4c_nohash_1.wav"].split == "validation"

    silence = [r for r in data.records if r.label == sc.SILENCE]
    # as many as an average word class: 12 word files / 4 words = 3
    assert len(silence) == 3
    noise = {
        str(root / sc.NOISE_DIR / n): sf.info(str(root / sc.NOISE_DIR / n)).duration
        for n in ("white_noise.wav", "pink_noise.wav")
    }
    seen = set()
    for r in silence:
        path, frag = r.source.rsplit("#t=", 1)
        start, end = (float(x) for x in frag.split(","))
        assert path in noise
        assert end - start == 1.0
        assert start >= 0 and end <= noise[path]
        assert r.name.startswith(f"{sc.SILENCE}/")
        assert r.split in ("train", "validation", "test")
        seen.add(r.source)
    assert len(seen) == 3  # distinct fragments


def test_speech_commands_bad_classes(speech_commands_root):
    with pytest.raises(UserInputError, match="--classes must be 'all' or '12', got '10'"):
        resolve(str(speech_commands_root), _opts(extra={"classes": "10"}))


def test_speaker_of():
    assert sc.speaker_of("yes/0a7c2a8d_nohash_0.wav") == "0a7c2a8d"


# -- Hugging Face ----------------------------------------------------------------------------


def _hf_dataset(labels, rows):
    """A Dataset with audio as {bytes, path} cast to Audio(decode=False) and a ClassLabel."""
    import datasets

    features = datasets.Features(
        {
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "label": datasets.ClassLabel(names=list(labels)),
            "speaker_id": datasets.Value("string"),
        }
    )
    columns = {
        "audio": [{"bytes": _wav_bytes(seed), "path": f"clip{seed}.wav"} for seed, _, _ in rows],
        "label": [labels.index(label) for _, label, _ in rows],
        "speaker_id": [spk for _, _, spk in rows],
    }
    ds = datasets.Dataset.from_dict(columns, features=features)
    return ds.cast_column("audio", datasets.Audio(decode=False))


# ClassLabel order on purpose not sorted: the names must be kept as the dataset orders them
HF_LABELS = ["yes", "no", "up"]
# speakers chosen so that their hash splits differ: spk0/spk1 train, spk24 validation, spk4 test
TRAIN_ROWS = [(0, "yes", "spk0"), (1, "no", "spk0"), (2, "up", "spk24"), (3, "yes", "spk4")]
TEST_ROWS = [(10, "no", "spk1"), (11, "up", "spk1")]


def _check_hf_records(data, expected_split_of_seed):
    assert data.labels == HF_LABELS
    got = {}
    # records keep only a reference to each row; the bytes are read when the store is built
    assert all(isinstance(r.source, RowBytes) for r in data.records)
    for r, source in zip(data.records, stream_sources(data.records), strict=True):
        seed = int(r.name.removeprefix("clip").removesuffix(".wav"))
        assert source == _wav_bytes(seed)  # the encoded file, untouched
        got[seed] = (r.label, r.group, r.split)
    expected = {
        seed: (label, spk, expected_split_of_seed(seed))
        for seed, label, spk in TRAIN_ROWS + TEST_ROWS
    }
    assert got == expected


def test_hf_parquet_dir(tmp_path):
    import datasets

    root = tmp_path / "pq"
    (root / "data").mkdir(parents=True)
    _hf_dataset(HF_LABELS, TRAIN_ROWS).to_parquet(
        str(root / "data" / "train-00000-of-00001.parquet")
    )
    # a hub-style export keeps Audio(decode=True): the reader must not decode it
    test = _hf_dataset(HF_LABELS, TEST_ROWS).cast_column("audio", datasets.Audio(decode=True))
    test.to_parquet(str(root / "data" / "test-00000-of-00001.parquet"))
    data = resolve(str(root), _opts())
    assert data.kind == "hf_parquet"
    _check_hf_records(data, lambda seed: "test" if seed >= 10 else "train")


def test_hf_save_to_disk_dict(tmp_path):
    import datasets

    root = tmp_path / "disk"
    datasets.DatasetDict(
        {
            "train": _hf_dataset(HF_LABELS, TRAIN_ROWS),
            "validation": _hf_dataset(HF_LABELS, TEST_ROWS),
        }
    ).save_to_disk(str(root))
    data = resolve(str(root), _opts())
    assert data.kind == "hf_disk"
    _check_hf_records(data, lambda seed: "validation" if seed >= 10 else "train")


def test_hf_save_to_disk_single_dataset_hash_split_by_speaker(tmp_path):
    root = tmp_path / "single"
    _hf_dataset(HF_LABELS, TRAIN_ROWS + TEST_ROWS).save_to_disk(str(root))
    data = resolve(str(root), _opts())
    # no split in the data: every speaker's rows land together, by the speaker's hash
    speaker = {seed: spk for seed, _, spk in TRAIN_ROWS + TEST_ROWS}
    _check_hf_records(data, lambda seed: hash_split(speaker[seed]))
    assert {r.split for r in data.records} == {"train", "validation", "test"}


def test_hf_parquet_without_split_in_name_is_hash_split(tmp_path):
    """A parquet file that names no split gets the hash split (DESIGN §4), by speaker; folders
    above the dataset (here ``test_runs/``) say nothing about its splits."""
    root = tmp_path / "test_runs" / "mydata"
    root.mkdir(parents=True)
    _hf_dataset(HF_LABELS, TRAIN_ROWS + TEST_ROWS).to_parquet(str(root / "part-0.parquet"))
    data = resolve(str(root), _opts())
    speaker = {seed: spk for seed, _, spk in TRAIN_ROWS + TEST_ROWS}
    _check_hf_records(data, lambda seed: hash_split(speaker[seed]))


def test_hf_unlabelled_rows_get_no_class(tmp_path):
    """HF marks a missing ClassLabel as -1 (e.g. unlabelled test splits): such rows must not
    silently become the last class (``names[-1]``); skipping them or refusing is fine."""
    import datasets

    features = datasets.Features(
        {
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "label": datasets.ClassLabel(names=HF_LABELS),
        }
    )
    rows = {
        "audio": [{"bytes": _wav_bytes(i), "path": f"clip{i}.wav"} for i in range(4)],
        "label": [0, -1, 1, -1],
    }
    ds = datasets.Dataset.from_dict(rows, features=features)
    ds.cast_column("audio", datasets.Audio(decode=False)).save_to_disk(str(tmp_path / "ds"))
    try:
        data = resolve(str(tmp_path / "ds"), _opts())
    except UserInputError:
        return
    labels = {r.name: r.label for r in data.records if not isinstance(r.source, Unusable)}
    assert labels.get("clip0.wav") == "yes" and labels.get("clip2.wav") == "no"
    assert "clip1.wav" not in labels and "clip3.wav" not in labels, labels
    skipped = {r.name: r.source.reason for r in data.records if isinstance(r.source, Unusable)}
    assert skipped == dict.fromkeys(("clip1.wav", "clip3.wav"), "unlabelled (ClassLabel -1)")


def test_hf_label_column_option_and_missing_label(tmp_path):
    root = tmp_path / "custom"
    ds = _hf_dataset(HF_LABELS, TRAIN_ROWS).rename_column("label", "word")
    ds.save_to_disk(str(root))
    with pytest.raises(UserInputError, match=r"no label column 'label'.*--label-column"):
        resolve(str(root), _opts())
    data = resolve(str(root), _opts(label_column="word"))
    assert data.labels == HF_LABELS
    assert [r.label for r in data.records] == [label for _, label, _ in TRAIN_ROWS]


def test_hf_media_column_option(tmp_path):
    root = tmp_path / "renamed"
    _hf_dataset(HF_LABELS, TRAIN_ROWS).rename_column("audio", "speech").save_to_disk(str(root))
    # "speech" is not a known name, but the Audio feature type gives it away
    assert len(resolve(str(root), _opts()).records) == 4
    with pytest.raises(UserInputError, match="no column 'sound'"):
        resolve(str(root), _opts(media_column="sound"))
    assert len(resolve(str(root), _opts(media_column="speech")).records) == 4


# -- not found / hub -------------------------------------------------------------------------


@pytest.mark.parametrize("src", ["./no/such/dir", "/no/such/abs", "missing.csv", "nope.jsonl"])
def test_nonexistent_local_path(tmp_path, monkeypatch, src):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=f"dataset not found: {src}"):
        resolve(src, _opts())


def test_hub_id_offline_is_one_line_user_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserInputError) as info:
        resolve("mmkit-test-org/no-such-dataset", _opts())
    msg = str(info.value)
    assert "\n" not in msg
    assert "mmkit-test-org/no-such-dataset" in msg
