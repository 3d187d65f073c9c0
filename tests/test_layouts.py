"""Dataset layouts are a plugin kind: ``register_layout``, found through the registry (so a
layout from ``MMKIT_PLUGINS`` is used by ``prepare``/``train``), listed and described, names
unique, tried in registration order before the generic folder readers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmkit.data.captions import CaptionOptions
from mmkit.data.records import Record, SourceData, SourceOptions, find_layout
from mmkit.data.sources import resolve
from mmkit.errors import UserInputError
from mmkit.registry import LAYOUTS, describe, list_plugins, register_layout
from tests.conftest import run_cli

CATEGORIES = ("dog", "rooster", "rain")  # ESC-50 targets 0, 1, 17
TARGETS = {"dog": 0, "rooster": 1, "rain": 17}
FOLDS = (1, 2, 3, 4, 5)
SPLIT_OF_FOLD = {4: "validation", 5: "test"}  # what the plugin below makes of the folds
PLUGIN = "zz_esc50_layout"

PLUGIN_SOURCE = '''
"""An ESC-50 layout, loaded through MMKIT_PLUGINS."""

from __future__ import annotations

import csv
from pathlib import Path

from mmkit import register_layout
from mmkit.data.records import Record, SourceData, SourceOptions

SPLITS = {"4": "validation", "5": "test"}


def is_esc50(path: Path, options: SourceOptions) -> bool:
    return (path / "meta" / "esc50.csv").is_file()


@register_layout("esc50_test", modality="audio", detect=is_esc50)
def read_esc50(path: Path, options: SourceOptions) -> SourceData:
    """ESC-50: meta/esc50.csv (filename, fold, target, category) + audio/*.wav."""
    with open(path / "meta" / "esc50.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    records = [
        Record(
            str(path / "audio" / row["filename"]),
            row["category"],
            row["filename"],
            SPLITS.get(row["fold"], "train"),
            row["fold"],
        )
        for row in rows
    ]
    return SourceData(records, sorted({r.label for r in records}), "esc50")
'''


def write_esc50(root: Path, per_fold: int = 2) -> dict[str, tuple[int, str]]:
    """An ESC-50-style folder: ``meta/esc50.csv`` + ``audio/<fold>-<src>-<take>-<target>.wav``
    (0.5 s tones at 44.1 kHz, a pitch per category). Returns ``{filename: (fold, category)}``."""
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    rate = 44100
    t = np.arange(rate // 2) / rate
    rows, truth = [], {}
    for fold in FOLDS:
        for c, category in enumerate(CATEGORIES):
            for take in range(per_fold):
                name = f"{fold}-{1000 + 10 * c + take}-A-{TARGETS[category]}.wav"
                wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * c) * t)
                wave += 0.02 * rng.standard_normal(t.size)
                sf.write(root / "audio" / name, wave.astype(np.float32), rate, subtype="PCM_16")
                rows.append(f"{name},{fold},{TARGETS[category]},{category},False,{1000 + c},A")
                truth[name] = (fold, category)
    header = "filename,fold,target,category,esc10,src_file,take"
    (root / "meta" / "esc50.csv").write_text("\n".join([header, *rows]) + "\n")
    return truth


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """The ESC-50 layout written as a module in ``tmp_path``, named by ``MMKIT_PLUGINS``."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    paths = [str(tmp_path / "plugins"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths), "MMKIT_PLUGINS": PLUGIN}


def test_a_plugin_layout_is_used_by_prepare_and_train(tmp_path: Path, plugin_env) -> None:
    root = tmp_path / "ESC-50"
    truth = write_esc50(root)
    proc = run_cli(
        "audio", "prepare", "--dataset", str(root), "--out", str(tmp_path / "store"), "--json",
        **plugin_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["labels"] == sorted(CATEGORIES)  # the csv's categories, not "audio"
    assert summary["split_source"] == "dataset" and summary["num_items"] == len(truth)
    expected: dict[str, dict[str, int]] = {}
    for fold, category in truth.values():
        per = expected.setdefault(SPLIT_OF_FOLD.get(fold, "train"), {})
        per[category] = per.get(category, 0) + 1
    assert {s: c for s, c in summary["per_class"].items() if c} == expected  # split by fold
    assert summary["splits"] == {"train": 18, "validation": 6, "test": 6}

    # without the plugin the same folder is the generic folder per class: one label, "audio"
    plain = run_cli("audio", "prepare", "--dataset", str(root), "--out", str(tmp_path / "p"),
                    "--json")  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["labels"] == ["audio"]

    run = tmp_path / "run"
    proc = run_cli(
        "audio", "train", "--dataset", str(root), "--out", str(run), "--backbone",
        "audio_cnn_test", "--epochs", "1", "--n-mels", "32", "--json", **plugin_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    config = json.loads(Path(result["best_checkpoint"], "config.json").read_text())
    assert config["labels"] == sorted(CATEGORIES)


def test_list_and_describe_show_a_plugin_layout(plugin_env) -> None:
    proc = run_cli("list", "--kind", "layout", "--json", **plugin_env)
    assert proc.returncode == 0, proc.stderr
    listed = {e["name"]: e for e in json.loads(proc.stdout)}
    assert {"speech_commands", "ucf101", "flickr8k", "coco", "esc50_test"} <= set(listed)
    assert {e["kind"] for e in listed.values()} == {"layout"}
    assert listed["esc50_test"] == {
        "name": "esc50_test",
        "kind": "layout",
        "modality": "audio",
        "description": "ESC-50: meta/esc50.csv (filename, fold, target, category) + audio/*.wav.",
        "tags": [],
        "module": PLUGIN,
        "arguments": {},
    }
    proc = run_cli("list", "--kind", "layout", "--modality", "video", **plugin_env)
    assert proc.returncode == 0 and "ucf101" in proc.stdout and "esc50_test" not in proc.stdout
    proc = run_cli("describe", "esc50_test", **plugin_env)
    assert proc.returncode == 0, proc.stderr
    assert "esc50_test (layout, audio) from zz_esc50_layout" in proc.stdout
    assert "meta/esc50.csv" in proc.stdout


@pytest.mark.parametrize("name", ["speech_commands", "esc50_test"])
def test_a_duplicate_layout_name_is_exit_1_one_line(tmp_path: Path, plugin_env, name) -> None:
    """Registered again by a second plugin module: a built-in's name, or another plugin's."""
    again = f'''
from mmkit import register_layout


@register_layout({name!r}, modality="audio", detect=lambda path, options: False)
def read(path, options):
    """Another layout of the same name."""
'''
    (tmp_path / "plugins" / "zz_layout_again.py").write_text(again)
    env = {**plugin_env, "MMKIT_PLUGINS": f"{PLUGIN},zz_layout_again"}
    for args in (["list", "--kind", "layout"], ["audio", "prepare", "--dataset", str(tmp_path)]):
        proc = run_cli(*args, **env)
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr == (
            "error: MMKIT_PLUGINS: cannot import 'zz_layout_again': "
            f"layout {name!r} is already registered\n"
        )


def test_built_in_layouts_are_tried_in_todays_order() -> None:
    """Manifests and HF files first, the dataset layouts, plain folders last (fallback)."""
    shared = ["manifest", "hf_disk", "hf_parquet"]
    assert [s.name for s in LAYOUTS.in_order("mm")] == [*shared, "flickr8k", "coco", "folders"]
    assert [s.name for s in LAYOUTS.in_order("audio")] == [*shared, "speech_commands", "folders"]
    assert [s.name for s in LAYOUTS.in_order("video")] == [*shared, "ucf101", "folders"]
    assert [s.kind for s in list_plugins(kind="layout")] == ["layout"] * len(LAYOUTS.names())
    assert describe("ucf101").module == "mmkit.data.layouts.ucf101"


def test_a_flickr_folder_with_a_karpathy_file_is_flickr(tmp_path: Path) -> None:
    """Flickr8k is tried before the caption JSON layouts, as the if/elif chain did."""
    (tmp_path / "Flickr8k.token.txt").write_text("a.jpg#0\ta dog runs\n")
    (tmp_path / "dataset_flickr8k.json").write_text('{"images": []}')
    spec = find_layout(tmp_path, CaptionOptions(), "mm")
    assert spec is not None and spec.name == "flickr8k"
    (tmp_path / "Flickr8k.token.txt").unlink()
    assert find_layout(tmp_path, CaptionOptions(), "mm").name == "coco"
    assert find_layout(tmp_path / "dataset_flickr8k.json", CaptionOptions(), "mm").name == "coco"


def test_a_layout_for_every_modality_and_its_data(tmp_path: Path) -> None:
    """``modality=None``: tried for each modality, after the built-ins but before the plain
    folder reader (a fallback); ``read`` gives the data."""
    marker = "zz-any-layout.txt"

    @register_layout("zz_any", modality=None, detect=lambda p, o: (p / marker).is_file())
    def read_any(path: Path, options: SourceOptions) -> SourceData:
        """Throw-away layout of every modality."""
        wav = str(path / "x.wav")
        return SourceData([Record(wav, "only", "x.wav", "test")], ["only"], "zz_any")

    try:
        (tmp_path / marker).write_text("")
        assert LAYOUTS.get("zz_any").modality == "any"
        for modality in ("audio", "video", "mm"):
            assert [s.name for s in LAYOUTS.in_order(modality)][-2:] == ["zz_any", "folders"]
        data = resolve(str(tmp_path), SourceOptions("video", (".mp4",)))
        assert (data.kind, data.labels) == ("zz_any", ["only"])
        assert [(r.name, r.split) for r in data.records] == [("x.wav", "test")]
        with pytest.raises(ValueError, match="layout 'zz_any' is already registered"):
            register_layout("zz_any", modality="audio", detect=lambda p, o: False)(read_any)
    finally:
        LAYOUTS.unregister("zz_any")
    with pytest.raises(UserInputError, match="modality must be one of audio, video"):
        register_layout("zz_bad", modality="speech", detect=lambda p, o: False)
