"""Datasets with broken rows, missing or misnamed columns, odd labels and odd paths (issue 19).

Rows in :mod:`tests.test_bad_inputs` style, run through the forked CLI as ``mmkit audio prepare
--dataset ... --json`` (``mm prepare`` for captions): a dataset mmkit cannot read at all is exit
1 with one ``error:`` line naming the file and the problem; a row or file it cannot use is
skipped, and every skipped one is in the JSON's ``skipped`` with its reason (and on stderr, one
line each), while the rest is prepared. ``{name}`` in an argument is a path the ``data`` fixture
made.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.forked_cli import ForkedCli
from tests.test_bad_export import assert_one_error_line
from tests.test_bad_inputs import TIMEOUT, _strict_json
from tests.test_sources import _wav_bytes

NAME_MAX = os.pathconf("/", "PC_NAME_MAX") if hasattr(os, "pathconf") else 255


@dataclass(frozen=True)
class Case:
    """``mmkit MODALITY prepare --dataset {dataset} ARGS --out {out} --json`` exits ``code``.

    Exit 1: ``stderr`` (a pattern) is the one ``error:`` line. Exit 0: the store holds
    ``items`` items, and ``skipped`` maps the name of every skipped row or file to a pattern of
    its reason (no other is skipped)."""

    id: str
    dataset: str  # a name the ``data`` fixture made
    code: int
    stderr: str = r"\A"
    args: tuple[str, ...] = ()
    items: int | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None  # exit 0: the class names, in order
    modality: str = "audio"


BROKEN_ROWS = {  # every broken row of the ``broken`` tables, and why it is skipped
    "no_media.wav": r"^no such file$",  # a path, no bytes, and no file there
    "train-4": r"^no media \(no bytes and no path\)$",  # null media: named by split and row
    "zero.wav": r"^0 bytes of media, and no file at its path zero\.wav$",
    "corrupt.wav": r"^Format not recognised$",  # libsndfile's words
    "null_label.wav": r"^no label \(null\)$",
    "latin1_label.wav": r"^the label is not UTF-8 text \(byte 3\)$",
    "empty_label.wav": r"^empty label$",
}

CASES = [
    # -- HF tables: broken rows are skipped, each with its reason; the good ones prepared -------
    Case("parquet-broken-rows", "broken_parquet", 0, items=3, skipped=BROKEN_ROWS),
    Case("save-to-disk-broken-rows", "broken_disk", 0, items=3, skipped=BROKEN_ROWS),
    Case(
        "classlabel-out-of-range",
        "classlabel_disk",
        0,
        items=2,
        labels=("yes", "no"),  # ClassLabel names, in the dataset's order
        skipped={
            "minus_one.wav": r"^unlabelled \(ClassLabel -1\)$",
            "seven.wav": r"^label 7 is not one of the 2 ClassLabel classes$",
        },
    ),
    # -- columns missing or named otherwise: one line that says which option to pass -----------
    Case("label-column-missing", "word_parquet", 1,
         r"no label column 'label' \(columns: audio, word\); pass --label-column"),
    Case("label-column-named", "word_parquet", 0, args=("--label-column", "word"), items=4),
    Case("label-column-misnamed-option", "word_parquet", 1, args=("--label-column", "Word"),
         stderr=r"no label column 'Word' \(columns: audio, word\)"),
    Case("audio-column-missing", "sound_parquet", 1,
         r"no audio column found \(columns: sound, label\); pass --audio-column"),
    Case("audio-column-named", "sound_parquet", 0, args=("--audio-column", "sound"), items=4),
    Case("audio-column-not-there", "sound_parquet", 1, args=("--audio-column", "audio"),
         stderr=r"no column 'audio' \(columns: sound, label\)"),
    # -- a label column of numbers, of names, of floats with gaps, of fractions -----------------
    Case("labels-numbers", "int_labels", 0, items=4, stderr=r"\A\Z", labels=("2", "10")),
    Case("labels-names", "word_parquet", 0, args=("--label-column", "word"), labels=("no", "yes")),
    Case("labels-floats-with-a-gap", "float_labels", 0, items=3, labels=("0", "1"),
         skipped={"f3.wav": r"^no label \(null\)$"}),
    Case("labels-fractions", "fraction_labels", 1,
         r"fractions\.parquet: label column 'label' holds 0\.5, not a class name or number"),
    # -- a split that does not exist -------------------------------------------------------------
    Case("split-missing-disk", "broken_disk", 1, args=("--set", "hf_split=nope"),
         stderr=r"broken_disk has no split 'nope' \(it has: train, test\)"),
    Case("split-missing-parquet", "split_parquet", 1, args=("--set", "hf_split=validation"),
         stderr=r"split_parquet has no split 'validation' \(it has: test, train\)"),
    Case("split-alias-found", "split_parquet", 0, args=("--set", "hf_split=testing"), items=4),
    # -- files that are not what they say ---------------------------------------------------------
    Case("parquet-garbage", "garbage_parquet", 1,
         r"parquet file .*garbage/train\.parquet: cannot be read \(Parquet file size"),
    Case("parquet-empty-file", "empty_parquet", 1,
         r"empty/train\.parquet: cannot be read \(Parquet file size is 0 bytes\)"),
    Case("parquet-cut-in-half", "cut_parquet", 1,
         r"cut/train\.parquet: cannot be read \(Parquet magic bytes not found"),
    # -- manifests are checked whole: a label that is not text is one line naming the row ------
    Case("manifest-label-not-utf8", "latin1_csv", 1,
         r"manifest .*latin1\.csv is not UTF-8 text \(byte 29\)"),
    Case("manifest-label-null", "null_label_jsonl", 1,
         r"null_label\.jsonl:1: empty 'label' for a\.wav"),
    # -- manifests: absolute paths, newlines, links out of the tree, the longest names ----------
    Case("manifest-absolute-paths", "absolute_csv", 0, items=3, stderr=r"\A\Z"),
    Case(
        "manifest-newline-in-path-csv",
        "newline_csv",
        0,
        items=2,
        skipped={"ghost\nfile.wav": r"^no such file$"},
    ),
    Case(
        "manifest-newline-in-path-jsonl",
        "newline_jsonl",
        0,
        items=2,
        skipped={"ghost\nfile.wav": r"^no such file$"},
    ),
    Case(
        "manifest-symlinks",
        "links_csv",
        0,
        items=2,  # the real file and a link that stays inside
        skipped={
            "yes/out.wav": r"^a symbolic link out of the dataset folder \(to .*/secret\.wav\)$",
            "no/away/secret.wav": r"^a symbolic link out of the dataset folder \(to .*/outside/",
        },
    ),
    Case(
        "folder-symlinks",
        "links_folder",
        0,
        items=2,
        skipped={
            "yes/out.wav": r"^a symbolic link out of the dataset folder \(to .*/secret\.wav\)$",
            "no/away": r"^a symbolic link out of the dataset folder \(to .*/outside\)$",
        },
    ),
    Case(
        "manifest-name-length-limit",
        "long_names_csv",
        0,
        items=3,  # NAME_MAX bytes in ASCII and in 3-byte characters: both read
        skipped={f"{'x' * (NAME_MAX - 3)}.wav": r"^file name too long$"},
    ),
    # -- captions from HF tables: broken image rows skipped with their reasons ------------------
    Case(
        "captions-parquet-broken-rows",
        "broken_captions",
        0,
        modality="mm",
        args=("--context-length", "16", "--image-size", "32"),
        skipped={
            "zero.png": r"0 bytes",
            "corrupt.png": r"^not an image format Pillow reads$",
            "train-3": r"^no media \(no bytes and no path\)$",
            "no_caption.png": r"^no caption$",
        },
    ),
]  # fmt: skip


# -- the data -----------------------------------------------------------------------------------
AUDIO_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _audio(name: str | None, data: bytes | None) -> dict[str, object]:
    return {"bytes": data, "path": name}


def _write_parquet(path: Path, columns: dict[str, pa.Array]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def broken_rows() -> dict[str, pa.Array]:
    """Three good rows and one of each :data:`BROKEN_ROWS` (labels as bytes, one not UTF-8)."""
    rows = [
        (_audio("good1.wav", _wav_bytes(1)), b"yes"),
        (_audio("no_media.wav", None), b"yes"),
        (_audio("good2.wav", _wav_bytes(2)), b"no"),
        (_audio("zero.wav", b""), b"no"),
        (None, b"no"),  # row-4
        (_audio("corrupt.wav", b"RIFF" + b"\x00garbage" * 40), b"yes"),
        (_audio("null_label.wav", _wav_bytes(3)), None),
        (_audio("latin1_label.wav", _wav_bytes(4)), "café".encode("latin-1")),
        (_audio("empty_label.wav", _wav_bytes(5)), b"  "),
        (_audio("good3.wav", _wav_bytes(6)), b"yes"),
    ]
    media, labels = zip(*rows, strict=True)
    return {"audio": pa.array(media, AUDIO_STRUCT), "label": pa.array(labels, pa.binary())}


def write_hf(root: Path) -> dict[str, Path]:
    """HF copies (parquet folders, ``save_to_disk`` folders) with broken rows and odd columns."""
    import datasets

    out: dict[str, Path] = {}
    broken = broken_rows()
    half = len(broken["label"]) // 2
    _write_parquet(root / "broken_parquet" / "train.parquet", broken)
    out["broken_parquet"] = root / "broken_parquet"
    table = pa.table(broken)  # the audio column a plain struct: datasets would stat its paths
    parts = {"train": table.slice(0, half), "test": table.slice(half)}
    datasets.DatasetDict(
        {name: datasets.Dataset(part) for name, part in parts.items()}
    ).save_to_disk(str(root / "broken_disk"))
    out["broken_disk"] = root / "broken_disk"
    classes = datasets.Features(
        {"audio": datasets.Audio(decode=False), "label": datasets.ClassLabel(names=["yes", "no"])}
    )
    names = ["a.wav", "minus_one.wav", "b.wav", "seven.wav"]
    rows = {
        "audio": [_audio(n, _wav_bytes(i)) for i, n in enumerate(names)],
        "label": [0, -1, 1, 7],
    }
    datasets.Dataset(pa.table({"audio": pa.array(rows["audio"], AUDIO_STRUCT),
                               "label": pa.array(rows["label"], pa.int64())}))\
        .cast(classes).save_to_disk(str(root / "classlabel_disk"))  # fmt: skip
    out["classlabel_disk"] = root / "classlabel_disk"

    def four(**columns: pa.Array) -> dict[str, pa.Array]:
        media = pa.array([_audio(f"f{i}.wav", _wav_bytes(i)) for i in range(4)], AUDIO_STRUCT)
        return {"audio": media, **columns}

    words = pa.array(["yes", "no", "yes", "no"])
    out["word_parquet"] = _write_parquet(root / "word" / "train.parquet", four(word=words)).parent
    sound = pa.array([_audio(f"s{i}.wav", _wav_bytes(i)) for i in range(4)], AUDIO_STRUCT)
    out["sound_parquet"] = _write_parquet(
        root / "sound" / "train.parquet", {"sound": sound, "label": words}
    ).parent
    out["int_labels"] = _write_parquet(
        root / "ints" / "ints.parquet", four(label=pa.array([10, 2, 10, 2]))
    ).parent
    out["float_labels"] = _write_parquet(
        root / "floats" / "floats.parquet", four(label=pa.array([1.0, 0.0, 1.0, None]))
    ).parent
    out["fraction_labels"] = _write_parquet(
        root / "fractions" / "fractions.parquet", four(label=pa.array([0.5, 1.5, 0.5, 1.5]))
    ).parent
    for split in ("train", "test"):
        _write_parquet(root / "split_parquet" / f"{split}.parquet", four(label=words))
    out["split_parquet"] = root / "split_parquet"
    (root / "garbage").mkdir()
    (root / "garbage" / "train.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    out["garbage_parquet"] = root / "garbage"
    (root / "empty").mkdir()
    (root / "empty" / "train.parquet").write_bytes(b"")
    out["empty_parquet"] = root / "empty"
    whole = (out["word_parquet"] / "train.parquet").read_bytes()
    (root / "cut").mkdir()
    (root / "cut" / "train.parquet").write_bytes(whole[: len(whole) // 2])
    out["cut_parquet"] = root / "cut"
    return out


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def write_manifests(root: Path) -> dict[str, Path]:
    """Manifests whose paths are absolute, hold newlines, are links out of the tree or names of
    the longest length the file system allows (and one byte more)."""
    out: dict[str, Path] = {}
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(_wav_bytes(9))
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    absolute = [elsewhere / f"abs{i}.wav" for i in range(3)]
    for i, path in enumerate(absolute):
        path.write_bytes(_wav_bytes(i))
    manifests = root / "manifests"
    manifests.mkdir()
    rows = "".join(f"{_csv_field(str(p))},{'yes' if i % 2 else 'no'}\n"
                   for i, p in enumerate(absolute))  # fmt: skip
    out["absolute_csv"] = manifests / "absolute.csv"
    out["absolute_csv"].write_text("path,label\n" + rows)
    (manifests / "a.wav").write_bytes(_wav_bytes(0))
    out["latin1_csv"] = manifests / "latin1.csv"
    out["latin1_csv"].write_bytes("path,label\na.wav,no\na.wav,café\n".encode("latin-1"))
    out["null_label_jsonl"] = manifests / "null_label.jsonl"
    out["null_label_jsonl"].write_text('{"path": "a.wav", "label": null}\n')

    newline = root / "newline"
    newline.mkdir()
    for name in ("new\nline.wav", "plain.wav"):
        (newline / name).write_bytes(_wav_bytes(len(name)))
    listed = [("new\nline.wav", "yes"), ("plain.wav", "no"), ("ghost\nfile.wav", "no")]
    out["newline_csv"] = newline / "m.csv"
    out["newline_csv"].write_text(
        "path,label\n" + "".join(f"{_csv_field(p)},{label}\n" for p, label in listed)
    )
    out["newline_jsonl"] = newline / "m.jsonl"
    out["newline_jsonl"].write_text(
        "".join(json.dumps({"path": p, "label": label}) + "\n" for p, label in listed)
    )

    links = root / "links"
    (links / "yes").mkdir(parents=True)
    (links / "no").mkdir()
    (links / "yes" / "real.wav").write_bytes(_wav_bytes(1))
    (links / "yes" / "inside.wav").symlink_to(links / "yes" / "real.wav")
    (links / "yes" / "out.wav").symlink_to(outside / "secret.wav")
    (links / "no" / "away").symlink_to(outside, target_is_directory=True)
    listed = [("yes/real.wav", "yes"), ("yes/inside.wav", "no"), ("yes/out.wav", "yes"),
              ("no/away/secret.wav", "no")]  # fmt: skip
    out["links_csv"] = links / "m.csv"
    out["links_csv"].write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in listed))
    # the same links read as a folder per class (the manifest is no media: it is not listed)
    out["links_folder"] = links

    long_names = root / "long_names"
    long_names.mkdir()
    ascii_name = "x" * (NAME_MAX - 4) + ".wav"  # NAME_MAX bytes
    wide_name = "語" * ((NAME_MAX - 4) // 3) + ".wav"  # 3 bytes a character in UTF-8
    for name in (ascii_name, wide_name, "short.wav"):
        (long_names / name).write_bytes(_wav_bytes(len(name)))
    listed = [(ascii_name, "yes"), (wide_name, "no"), ("short.wav", "no"),
              ("x" * (NAME_MAX - 3) + ".wav", "yes")]  # fmt: skip
    out["long_names_csv"] = long_names / "m.csv"
    out["long_names_csv"].write_text(
        "path,label\n" + "".join(f"{p},{label}\n" for p, label in listed), encoding="utf-8"
    )
    return out


def write_captions(root: Path) -> dict[str, Path]:
    """An image-text parquet with good rows and broken ones (see the case)."""
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

    def png(colour: tuple[int, int, int]) -> bytes:
        import io

        buf = io.BytesIO()
        Image.new("RGB", (24, 24), colour).save(buf, "PNG")
        return buf.getvalue()

    rng = np.random.default_rng(0)
    rows = [
        ({"bytes": png((200, 0, 0)), "path": "red.png"}, "a red square"),
        ({"bytes": b"", "path": "zero.png"}, "nothing"),
        ({"bytes": rng.bytes(600), "path": "corrupt.png"}, "noise"),
        (None, "no image at all"),  # row-3
        ({"bytes": png((0, 0, 200)), "path": "blue.png"}, "a blue square"),
        ({"bytes": png((0, 200, 0)), "path": "no_caption.png"}, None),
    ]
    images, captions = zip(*rows, strict=True)
    path = _write_parquet(
        root / "captions" / "train.parquet",
        {"image": pa.array(images, image), "text": pa.array(captions, pa.string())},
    )
    return {"broken_captions": path.parent}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_datasets")
    out = {**write_hf(root / "hf"), **write_manifests(root), **write_captions(root)}
    return {k: str(v) for k, v in out.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_dataset(case: Case, data: dict[str, str], cli: ForkedCli, tmp_path: Path) -> None:
    out = tmp_path / "store"
    args = [case.modality, "prepare", "--dataset", data[case.dataset], *case.args,
            "--out", str(out), "--json"]  # fmt: skip
    proc = cli.run(args, timeout=TIMEOUT)
    if case.code == 1:
        assert_one_error_line(proc, case.stderr)
        assert not out.exists()
        return
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    summary = _strict_json(proc.stdout)
    if case.items is not None:
        assert summary.get("num_items", summary.get("num_images")) == case.items, summary
    if case.labels is not None:
        assert summary["labels"] == list(case.labels), summary
    skipped = {s["name"]: s["reason"] for s in summary["skipped"]}
    assert sorted(skipped) == sorted(case.skipped), skipped
    for name, pattern in case.skipped.items():
        assert re.search(pattern, skipped[name]), (name, skipped[name])
    notes = proc.stderr.splitlines()  # one line per skipped row, its name and its reason
    assert len(notes) == len(case.skipped), proc.stderr
    assert re.search(case.stderr, proc.stderr), proc.stderr
