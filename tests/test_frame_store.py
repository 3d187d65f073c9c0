"""Video stores that keep frames as JPEG (``--store-format jpeg``, mmkit.data.frame_codec): the
frames come back close to the raw ones, the items and labels are the same, the manifest says
which format (version 2), a resumed write ends with the store of one run, damage is one line,
and prepare -> train -> eval -> infer runs on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmkit.data.frame_codec import ENDS, JPEG_QUALITY, frame_params
from mmkit.data.store import MANIFEST, Store
from mmkit.data.store_writer import StoreWriter
from mmkit.errors import UserInputError
from mmkit.pipelines import video
from tests.conftest import run_cli

SHAPE = (40, 40, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def _clips(n: int) -> list[np.ndarray]:
    """Smooth moving gradients (what video frames look like to JPEG), 3 to 9 frames each."""
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    clips = []
    for i in range(n):
        t = np.arange(3 + i % 7)[:, None, None]
        planes = np.broadcast_arrays(x * 4 + t * 4, y * 4 + i * 3 + 0 * t, (x + y) * 2 + t)
        base = np.stack(planes, axis=-1)
        clips.append(base.astype(np.uint8))  # 0..188: no wrap-around edges
    return clips


def _writer(out: Path, fmt: str, resume: str | None = None) -> StoreWriter:
    params = {"short_side": SHAPE[0], **frame_params(fmt)}
    return StoreWriter(out, modality="video", dtype="uint8", item_shape=SHAPE, params=params,
                       resume=resume)  # fmt: skip


def _feed(writer: StoreWriter, clips: list[np.ndarray], start: int, stop: int) -> None:
    for i in range(start, stop):
        writer.add(clips[i], name=f"{i}.mp4", label="ab"[i % 2], split="train", group="")


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def test_jpeg_frames_round_trip_close_to_raw_and_much_smaller(tmp_path):
    clips = _clips(10)
    raw, jpeg = _writer(tmp_path / "raw", "raw"), _writer(tmp_path / "jpeg", "jpeg")
    for w in (raw, jpeg):
        _feed(w, clips, 0, 10)
        w.commit(["a", "b"])
    raw, jpeg = Store(tmp_path / "raw"), Store(tmp_path / "jpeg")
    meta = json.loads((tmp_path / "jpeg" / MANIFEST).read_text())
    assert meta["format_version"] == 2 and meta["params"]["frame_format"] == "jpeg"
    assert meta["params"]["jpeg_quality"] == JPEG_QUALITY
    assert json.loads((tmp_path / "raw" / MANIFEST).read_text())["format_version"] == 1
    assert "frame_format" not in raw.params  # raw stores keep their old params and fingerprint
    assert raw.items == jpeg.items and list(raw.targets) == list(jpeg.targets)
    for i, clip in enumerate(clips):
        np.testing.assert_array_equal(raw[i], clip)
        assert jpeg[i].shape == clip.shape and jpeg[i].dtype == np.uint8
        assert psnr(jpeg[i], clip) > 35 and np.abs(jpeg[i] - clip.astype(int)).mean() < 2.0
    order = np.array([[2, 0, 2], [1, 1, 0]])  # any shape, repeats: each frame decoded once
    assert jpeg.take(3, order).shape == (2, 3, *SHAPE)
    np.testing.assert_array_equal(jpeg.take(3, order), jpeg[3][order])
    np.testing.assert_array_equal(raw.take(3, order), clips[3][order])
    sizes = {k: sum(f.stat().st_size for f in (tmp_path / k).iterdir()) for k in ("raw", "jpeg")}
    assert sizes["jpeg"] * 4 < sizes["raw"], sizes


def test_a_resumed_jpeg_writer_ends_with_the_store_of_one_run(tmp_path):
    clips = _clips(9)
    fresh = _writer(tmp_path / "fresh", "jpeg")
    _feed(fresh, clips, 0, 9)
    fresh.commit(["a", "b"])
    first = _writer(tmp_path / "store", "jpeg", resume="fp")
    _feed(first, clips, 0, 4)
    first.checkpoint()
    _feed(first, clips, 4, 6)  # after the last chunk: cut off
    first._data.flush()
    first._ends.flush()
    first.abort()
    again = _writer(tmp_path / "store", "jpeg", resume="fp")
    assert again.records == 4
    _feed(again, clips, 4, 9)
    again.commit(["a", "b"])
    assert _files(tmp_path / "store") == _files(tmp_path / "fresh")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate-ends", r"frames.bin: holds \d+ bytes but mmkit_store.json describes"),
        ("truncate-data", r"data.bin: holds \d+ bytes but mmkit_store.json describes"),
        ("version-1", r"params.frame_format must be raw in a format 1 store"),
        ("raw-as-2", r"params.frame_format must be jpeg in a format 2 store"),
    ],
)
def test_a_damaged_jpeg_store_is_one_line(tmp_path, damage, message):
    out = tmp_path / "s"
    writer = _writer(out, "jpeg")
    _feed(writer, _clips(3), 0, 3)
    writer.commit(["a", "b"])
    meta = json.loads((out / MANIFEST).read_text())
    if damage.startswith("truncate"):
        path = out / (ENDS if damage == "truncate-ends" else "data.bin")
        path.write_bytes(path.read_bytes()[:-3])
    elif damage == "version-1":
        meta["format_version"] = 1
    else:
        meta["params"] = {"short_side": SHAPE[0]}
    (out / MANIFEST).write_text(json.dumps(meta))
    with pytest.raises(UserInputError, match=message) as info:
        Store(out)
    assert "\n" not in str(info.value)


def test_video_prepare_train_eval_infer_on_a_jpeg_store(motion_set, tmp_path):
    folder = str(motion_set.layouts["folder"])
    shape = ("--size", "32", "--set", "store_frames=8")
    for fmt in ("raw", "jpeg"):
        proc = run_cli("video", "prepare", "-d", folder, "-o", str(tmp_path / fmt),
                       "--store-format", fmt, *shape, "--json")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    raw, jpeg = Store(tmp_path / "raw"), Store(tmp_path / "jpeg")
    assert jpeg.params == {**raw.params, "frame_format": "jpeg", "jpeg_quality": JPEG_QUALITY}
    assert raw.items == jpeg.items and raw.labels == jpeg.labels
    decoded = np.concatenate([jpeg[i] for i in range(len(jpeg))])
    error = np.abs(decoded - np.asarray(raw.data, dtype=int)).mean()
    print(f"{len(decoded)} frames: PSNR {psnr(decoded, np.asarray(raw.data)):.1f} dB, "
          f"mean abs diff {error:.2f}")  # fmt: skip
    assert psnr(decoded, np.asarray(raw.data)) > 30 and error < 4.0

    run = tmp_path / "run"  # the implicit prepare of train makes the jpeg store
    proc = run_cli("video", "train", "-d", folder, "-o", str(run), "--store-format", "jpeg",
                   "--backbone", "video_r3d_test", "--frames", "4", "--epochs", "1",
                   "--batch-size", "4", "--logger", "none", "--set", "max_steps_per_epoch=3",
                   *shape, "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(
        (Path(json.loads(proc.stdout)["best_checkpoint"]) / "config.json").read_text()
    )
    assert spec["data"]["params"]["frame_format"] == "jpeg"
    ev = run_cli("video", "eval", "-k", str(run), "-d", folder, "--json")
    assert ev.returncode == 0, ev.stderr
    assert "using prepared store" in ev.stderr  # eval reads the run's jpeg store, no new prepare
    assert json.loads(ev.stdout)["num_samples"] == len(motion_set.split("test"))
    [result] = video.infer([str(motion_set.split("test")[0].path)], str(run), k=2)
    assert len(result["top_k"]) == 2


def test_the_scale_bench_compares_store_formats(motion_set, tmp_path):
    from mmkit.pipelines.bench.scale import ScaleSettings, compare, store_formats

    folder = motion_set.layouts["folder"]
    formats = store_formats("ucf101", folder, ScaleSettings.quick(), "cpu", tmp_path, timed=8)
    raw, jpeg = formats["raw"], formats["jpeg"]
    assert raw["items"] == jpeg["items"] == len(motion_set.clips)
    assert jpeg["store_bytes_per_item"] * 3 < raw["store_bytes_per_item"]
    assert raw["gb_per_1000_items"] == pytest.approx(raw["store_bytes_per_item"] / 1e6, abs=1e-3)
    assert raw["loader_items_per_second"] > 0 and jpeg["loader_items_per_second"] > 0
    ratios = compare([], None, formats)["ratios"]
    assert ratios["jpeg_over_raw_store_bytes_per_item"] == pytest.approx(
        jpeg["store_bytes_per_item"] / raw["store_bytes_per_item"], abs=1e-3
    )
    assert not list(tmp_path.iterdir())  # the stores are removed
