"""End to end on real encoded video: classes that only motion can tell apart.

An object moves left, right, up or down over a textured scene (tests/fixtures/video.py); one frame
cannot tell the class. Validation and test scenes never appear in training. A model trained through
the CLI must beat chance on held-out scenes, and fall back to about chance when the frames of each
test clip are shuffled: the proof that sampling keeps temporal order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mmkit.io.video import read_video
from mmkit.pipelines import video
from tests.conftest import run_cli
from tests.media.video import encode_video
from tests.media.video_layouts import write_folder_layout

CHANCE = 0.25
TRAIN_ARGS = ("--frames", "8", "--size", "48", "--batch-size", "8", "--lr", "0.002", "--seed", "0")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, motion_set) -> Path:
    out = tmp_path_factory.mktemp("video_runs") / "motion"
    proc = run_cli(
        "video",
        "train",
        "--dataset",
        str(motion_set.layouts["folder"]),
        "--out",
        str(out),
        "--epochs",
        "8",
        *TRAIN_ARGS,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["best_metric"]["accuracy"] > CHANCE
    return out


@pytest.fixture(scope="module")
def shuffled_test(tmp_path_factory: pytest.TempPathFactory, motion_set) -> Path:
    """The test clips re-encoded with their frames in a random order (same frames, no motion)."""
    root = tmp_path_factory.mktemp("shuffled")
    rng = np.random.default_rng(0)
    clips = []
    for clip in motion_set.split("test"):
        frames = read_video(clip.path)
        path = root / "clips" / clip.label / clip.path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        encode_video(path, frames[rng.permutation(len(frames))], 12)
        clips.append(type(clip)(path, clip.label, clip.source, clip.split))
    return write_folder_layout(root / "layout", clips)


def test_held_out_scenes_and_shuffled_frames(
    trained: Path, motion_set, shuffled_test: Path
) -> None:
    proc = run_cli(
        "video",
        "eval",
        "--checkpoint",
        str(trained),
        "--dataset",
        str(motion_set.layouts["folder"]),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    shuffled = video.evaluate(str(trained), video.VideoConfig(dataset=str(shuffled_test)))
    print(
        f"held-out scenes accuracy {report['accuracy']:.3f}, "
        f"frames shuffled {shuffled['accuracy']:.3f}"
    )
    assert report["accuracy"] >= 2 * CHANCE
    assert shuffled["accuracy"] <= report["accuracy"] - 0.2
    assert report["num_samples"] == len(motion_set.split("test"))
    assert len(report["confusion_matrix"]) == 4


def test_infer_json_top_k(trained: Path, motion_set) -> None:
    clips = motion_set.split("test")[::3]
    proc = run_cli(
        "video",
        "infer",
        *(str(c.path) for c in clips),
        "--checkpoint",
        str(trained),
        "--top-k",
        "4",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["path"] for r in results] == [str(c.path) for c in clips]
    for r in results:
        assert [set(t) for t in r["top_k"]] == [{"label", "score"}] * 4
        assert sum(t["score"] for t in r["top_k"]) == pytest.approx(1.0, abs=1e-3)


def test_infer_every_container_and_quirk(trained: Path, video_formats) -> None:
    names = sorted(video_formats.paths)
    results = video.infer([str(video_formats.paths[n]) for n in names], str(trained), k=1)
    assert len(results) == len(names)
    assert all(0.0 < r["top_k"][0]["score"] <= 1.0 for r in results)


def test_infer_folder_and_errors(trained: Path, motion_set, tmp_path: Path) -> None:
    folder = motion_set.layouts["folder"] / "test" / "left"
    results = video.infer([str(folder)], str(trained), k=1)
    assert len(results) == len(list(folder.iterdir()))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2048))
    proc = run_cli("video", "infer", str(bad), "--checkpoint", str(trained))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot decode") and proc.stderr.strip().count("\n") == 0
    proc = run_cli("video", "train", "--dataset", str(folder), "--sampling", "sideways")
    assert proc.returncode == 2 and "--sampling" in proc.stderr  # a closed choice: usage error


@pytest.mark.parametrize(
    "layout",
    [
        "folder_flat",
        "ucf101",
        "csv",
        "jsonl",
        "hf_parquet",
        "hf_parquet_paths",
        "hf_disk",
        "hf_disk_paths",
    ],
)
def test_every_source_layout_prepares(layout: str, motion_set, tmp_path: Path) -> None:
    cfg = video.VideoConfig(dataset=str(motion_set.layouts[layout]), size=32, store_frames=8)
    store = video.prepare(cfg, out=tmp_path / "store")
    summary = store.summary()
    expected = sum(1 for c in motion_set.clips if layout != "ucf101" or c.split)
    assert summary["num_items"] == expected and not summary["skipped"]
    assert len(store.labels) == 4
    if layout == "ucf101":  # classInd spells HandstandPushups, folders HandStandPushups
        assert "HandstandPushups" in store.labels
        assert summary["splits"]["test"] == len(motion_set.split("test"))
    assert store[0].shape[1:] == (37, 37, 3)


@pytest.mark.parametrize("backbone", ["video_r3d_test", "video_vit_test"])
def test_backbone_train_then_infer(backbone: str, motion_set, tmp_path: Path) -> None:
    cfg = video.VideoConfig(
        dataset=str(motion_set.layouts["folder"]),
        out=str(tmp_path / "run"),
        backbone=backbone,
        epochs=1,
        batch_size=4,
        frames=4,
        size=32,
        max_steps_per_epoch=3,
        num_clips=2,
    )
    result = video.train(cfg)
    assert (result.best_checkpoint / "config.json").is_file()
    [r] = video.infer([str(motion_set.split("test")[0].path)], str(tmp_path / "run"), k=2)
    assert len(r["top_k"]) == 2
