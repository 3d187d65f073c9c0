"""Which items eval scores and which items validation uses (issue: numbers users can trust)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmkit.data.splits import carve_validation, eval_selection, training_splits
from mmkit.data.store_writer import StoreWriter
from mmkit.errors import UserInputError
from mmkit.events import NullProgress
from tests.conftest import run_cli
from tests.media.speech_layouts import write_split_folders

# -- carving validation out of train -----------------------------------------------------------


def test_carve_by_group_keeps_groups_whole_and_is_seeded() -> None:
    groups = [f"spk{i % 25}" for i in range(200)]
    a = carve_validation(groups, seed=0)
    assert a.by == "group"
    assert sorted(a.train + a.validation) == list(range(200))
    assert {groups[i] for i in a.train}.isdisjoint({groups[i] for i in a.validation})
    assert 16 <= len(a.validation) <= 32  # about a tenth, in whole groups of 8
    assert carve_validation(groups, seed=0) == a
    assert carve_validation(groups, seed=1).validation != a.validation


def test_carve_by_item_without_groups() -> None:
    carved = carve_validation([""] * 50, seed=3)
    assert carved.by == "item" and len(carved.validation) == 5
    assert set(carved.train).isdisjoint(carved.validation)
    # two huge groups cannot give a tenth: items are carved instead
    assert carve_validation(["a"] * 30 + ["b"] * 30, seed=0).by == "item"


def _store(tmp_path: Path, splits: list[str], *, source: str, fingerprint: str = "fp"):
    writer = StoreWriter(
        tmp_path / "store", modality="audio", dtype="int16", item_shape=(), params={}
    )
    for i, split in enumerate(splits):
        writer.add(
            np.full(10, i, np.int16),
            name=f"f{i}.wav",
            label=f"c{i % 2}",
            split=split,
            group=f"g{i % 7}",
        )
    return writer.commit(["c0", "c1"], fingerprint=fingerprint, split_source=source, dataset="data")


def test_validation_is_carved_from_train_never_test(tmp_path: Path) -> None:
    store = _store(tmp_path, ["train"] * 70 + ["test"] * 30, source="dataset")
    splits = training_splits(store, "data", NullProgress(), seed=0)
    test = set(store.indices("test"))
    assert splits.info["source"] == "carved from train" and splits.info["by"] == "group"
    assert splits.info["num_items"] == len(splits.validation) > 0
    assert test.isdisjoint(splits.validation) and test.isdisjoint(splits.train)
    assert set(splits.train).isdisjoint(splits.validation)
    assert len(splits.train) + len(splits.validation) == 70


def test_tiny_train_validates_on_train_with_a_warning(tmp_path: Path) -> None:
    messages: list[str] = []

    class Record(NullProgress):
        def message(self, text: str) -> None:
            messages.append(text)

    store = _store(tmp_path, ["train"] * 12 + ["test"] * 5, source="dataset")
    splits = training_splits(store, "data", Record(), seed=0)
    assert splits.validation == splits.train == store.indices("train")
    assert splits.info == {"source": "train", "num_items": 12}
    assert messages and messages[0].startswith("warning:")


def test_eval_selection_rules(tmp_path: Path) -> None:
    hashed = _store(tmp_path / "h", ["train"] * 8 + ["validation"] + ["test"], source="hash")
    whole = eval_selection(hashed, "auto", "another-fingerprint")
    assert (whole.split, len(whole.indices)) == ("all", 10)
    assert "no splits of its own" in whole.note
    held_back = eval_selection(hashed, None, "fp")  # the dataset the checkpoint trained on
    assert (held_back.split, held_back.indices) == ("test", [9])
    assert "trained on" in held_back.note
    assert len(eval_selection(hashed, "all", "fp").indices) == 10
    named = _store(tmp_path / "n", ["train"] * 6 + ["test"] * 4, source="dataset")
    assert eval_selection(named, "auto", None).indices == [6, 7, 8, 9]
    assert eval_selection(named, "train", None).split == "train"
    with pytest.raises(UserInputError, match="validation split is empty"):
        eval_selection(named, "validation", None)
    with pytest.raises(UserInputError, match="--split must be one of"):
        eval_selection(named, "dev", None)


# -- end to end through the CLI ----------------------------------------------------------------


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, speech_sources: dict[str, Path], speech_set
) -> Path:
    """A tiny audio run trained on a train/ + test/ folder dataset (no validation folder)."""
    root = tmp_path_factory.mktemp("splits")
    folders = write_split_folders(
        root / "data",
        speech_set.items,
        speech_set.split.mapping(),
        split_dirs={"validation": "train"},
    )
    assert sorted(p.name for p in folders.iterdir()) == ["test", "train"]
    out = root / "run"
    proc = run_cli(
        "audio",
        "train",
        "--dataset",
        str(folders),
        "--out",
        str(out),
        "--backbone",
        "audio_cnn_test",
        "--epochs",
        "1",
        "--n-mels",
        "32",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert "no validation split: validating on" in proc.stderr
    return out


def test_train_test_folders_validate_on_carved_train(run: Path) -> None:
    config = json.loads((run / "best" / "config.json").read_text())
    validation = config["data"]["validation"]
    assert validation["source"] == "carved from train"
    assert validation["num_items"] > 0
    store = config["data"]["store"]
    manifest = json.loads((Path(store) / "mmkit_store.json").read_text())
    num_train = sum(1 for item in manifest["items"] if item["split"] == "train")
    assert validation["num_items"] == pytest.approx(num_train / 10, abs=num_train / 10)


def test_eval_of_a_split_less_manifest_scores_every_file(
    run: Path, speech_sources: dict[str, Path]
) -> None:
    manifest = speech_sources["csv_nosplit"]
    files = len(manifest.read_text().splitlines()) - 1
    proc = run_cli("audio", "eval", "--checkpoint", str(run), "--dataset", str(manifest), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["split"], result["num_samples"]) == ("all", files)
    assert sum(r["support"] for r in result["per_class"].values()) == files
    assert f"scoring all {files} items" in proc.stderr
    # a dataset with splits: its test split by default, everything with --split all
    proc = run_cli("audio", "eval", "-k", str(run), "-d", str(speech_sources["csv"]), "--json")
    result = json.loads(proc.stdout)
    rows = [r for r in speech_sources["csv"].read_text().splitlines()[1:] if r.endswith(",test")]
    assert (result["split"], result["num_samples"]) == ("test", len(rows))
    proc = run_cli(
        "audio",
        "eval",
        "-k",
        str(run),
        "-d",
        str(speech_sources["csv"]),
        "--split",
        "all",
        "--json",
    )
    assert json.loads(proc.stdout)["num_samples"] == files


def test_eval_on_the_training_dataset_scores_its_held_back_part(
    tmp_path: Path, speech_sources: dict[str, Path]
) -> None:
    manifest = speech_sources["csv_nosplit"]
    out = tmp_path / "run"
    proc = run_cli(
        "audio",
        "train",
        "--dataset",
        str(manifest),
        "--out",
        str(out),
        "--backbone",
        "audio_cnn_test",
        "--epochs",
        "1",
        "--n-mels",
        "32",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("audio", "eval", "-k", str(out), "-d", str(manifest), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    store = json.loads((out / "best" / "config.json").read_text())["data"]["store"]
    items = json.loads((Path(store) / "mmkit_store.json").read_text())["items"]
    assert result["split"] == "test"
    assert result["num_samples"] == sum(1 for i in items if i["split"] == "test") > 0
    assert "trained on" in proc.stderr
