"""The camera-motion clip generator of the held-out-source video protocol, on a tiny set: real
encoded files in the promised containers, codecs and sizes, labels that match the motion in the
decoded frames, sources never shared between training and test, and a cache that is reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.camera_motion_data import (
    ALL_LABELS,
    LABELS,
    ROLL_LABELS,
    TEST_FORMATS,
    TRAIN_FORMAT,
    DataSpec,
    _clip_plan,
    build_source,
    camera_boxes,
    camera_path,
    ensure_data,
    generate,
    render_clip,
)
from mmkit.io.video import probe, read_video

TINY = DataSpec(
    train_per_class=1,
    test_per_class=2,
    train_frames=12,
    test_frames=(10, 14),
    source_scale=0.25,
    train_sources=("china", "life"),
    test_sources=("flower", "shapes"),
)
CODEC_NAMES = {"libx264": "h264", "libx265": "hevc", "libvpx-vp9": "vp9"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return ensure_data(tmp_path_factory.mktemp("camera_motion"), TINY)


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(dy, dx) that content moved from frame ``a`` to frame ``b`` (phase correlation)."""
    fa, fb = np.fft.fft2(a.mean(-1)), np.fft.fft2(b.mean(-1))
    r = np.fft.ifft2(fb * np.conj(fa) / (np.abs(fb * np.conj(fa)) + 1e-9)).real
    dy, dx = np.unravel_index(int(r.argmax()), r.shape)
    h, w = r.shape
    return (dy if dy <= h // 2 else dy - h), (dx if dx <= w // 2 else dx - w)


def test_files_formats_and_manifests(tiny) -> None:
    train, test = tiny.rows("train"), tiny.rows("test")
    assert len(train) == len(LABELS) * TINY.train_per_class
    assert len(test) == len(LABELS) * TINY.test_per_class
    assert {r["label"] for r in train} == {r["label"] for r in test} == set(LABELS)
    assert {r["group"] for r in train} == set(TINY.train_sources)
    assert {r["group"] for r in test} == set(TINY.test_sources)
    ext, codec, w, h, _ = TRAIN_FORMAT
    for r in train:
        info = probe(tiny.root / r["path"])
        assert r["path"].endswith(ext) and r["path"].startswith(f"train/{r['label']}/")
        assert (info.codec, info.width, info.height) == (CODEC_NAMES[codec], w, h)
        assert info.num_frames == TINY.train_frames
    formats = {f"{e[1:]}/{c} {fw}x{fh}": (e, c, fw, fh) for e, c, fw, fh, _ in TEST_FORMATS}
    for r in test:
        e, c, fw, fh = formats[r["format"]]
        info = probe(tiny.root / r["path"])
        assert r["path"].endswith(e)
        assert (info.width, info.height) == (fw, fh)
        assert info.codec == CODEC_NAMES.get(c, c)
        assert TINY.test_frames[0] <= info.num_frames <= TINY.test_frames[1]
    assert len({r["format"] for r in test}) > 1


def test_pan_labels_match_the_decoded_motion(tiny) -> None:
    """Content moves against the camera: a pan left shifts the picture right, a tilt up down."""
    want = {"pan_left": (0, 1), "pan_right": (0, -1), "tilt_up": (1, 0), "tilt_down": (-1, 0)}
    splits = {s: [r for r in tiny.rows(s) if r["label"] in want] for s in ("train", "test")}
    for split, rows in splits.items():  # clips of every direction in both splits, to check
        assert {r["label"] for r in rows} == set(want), split
    for r in splits["train"] + splits["test"]:
        frames = read_video(tiny.root / r["path"])
        dy, dx = _shift(frames[0], frames[3])
        sy, sx = want[r["label"]]
        main, side = (dx * sx, abs(dy)) if sx else (dy * sy, abs(dx))
        assert main > 0 and main > side, (r["path"], dy, dx)


def test_camera_boxes_zoom_pan_and_stay_inside() -> None:
    rng = np.random.default_rng(0)
    for label in LABELS:
        for n in (12, 48):
            boxes = camera_boxes(label, n, 16 / 9, (180, 240), rng)
            width = boxes[:, 2] - boxes[:, 0]
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            assert boxes[:, :2].min() >= 0
            assert boxes[:, 2].max() <= 240 and boxes[:, 3].max() <= 180
            np.testing.assert_allclose(width / (boxes[:, 3] - boxes[:, 1]), 16 / 9)
            if label == "zoom_in":
                assert width[-1] < 0.9 * width[0]
            elif label == "zoom_out":
                assert width[-1] > 1.1 * width[0]
            else:
                axis = 0 if label.startswith("pan") else 1
                step = centre[-1, axis] - centre[0, axis]
                sign = -1 if label in ("pan_left", "tilt_up") else 1
                assert step * sign > 0.1 * width[0]
                np.testing.assert_allclose(width, width[0])
    with pytest.raises(ValueError, match="label must be one of"):
        camera_boxes("dolly", 8, 1.0, (100, 100), rng)


def test_rolls_turn_the_view_and_its_circle_stays_inside() -> None:
    rng = np.random.default_rng(0)
    for label in ROLL_LABELS:
        for n, aspect in ((12, 1.0), (48, 16 / 9)):
            boxes, angles = camera_path(label, n, aspect, (180, 240), rng)
            size = boxes[:, 2:] - boxes[:, :2]
            np.testing.assert_allclose(size, np.broadcast_to(size[0], size.shape))  # no zoom
            turn = angles[-1] - angles[0]
            assert (turn > 0) == (label == "roll_cw") and abs(turn) >= 0.02 * (n - 1) * 0.99
            centre, radius = (boxes[:, :2] + boxes[:, 2:]) / 2, np.hypot(*size[0]) / 2
            assert (centre - radius).min() >= 0
            assert (centre[:, 0] + radius).max() <= 240 and (centre[:, 1] + radius).max() <= 180
    for label in LABELS:
        assert not camera_path(label, 12, 1.0, (180, 240), rng)[1].any()


def test_a_roll_turns_the_picture_the_other_way() -> None:
    """The camera turns clockwise: a mark right of the centre moves up in the picture."""
    h, w = 240, 320
    for label, up in (("roll_cw", True), ("roll_ccw", False)):
        for seed in range(3):
            boxes, _ = camera_path(label, 16, 1.0, (h, w), np.random.default_rng(seed))
            x0, y0, x1, y1 = boxes[0]
            footage = np.zeros((1, h, w, 3), np.uint8)
            mx, my = int((x0 + x1) / 2 + 0.3 * (x1 - x0)), int((y0 + y1) / 2)
            footage[0, my - 4 : my + 4, mx - 4 : mx + 4] = 255
            clip = render_clip(footage, label, 16, (64, 64), np.random.default_rng(seed))
            first, last = (np.argwhere(f[..., 0] > 128).mean(0) for f in (clip[0], clip[-1]))
            assert first[1] > 40  # right of the centre, at first
            assert (last[0] < first[0] - 3) == up and (last[0] > first[0] + 3) == (not up)


def test_a_label_subset_writes_those_labels_clips_unchanged() -> None:
    full = {p["rel"]: p for p in _clip_plan(DataSpec(labels=ALL_LABELS))}
    subset = _clip_plan(DataSpec(labels=("zoom_out", "roll_cw")))
    assert {p["label"] for p in subset} == {"zoom_out", "roll_cw"}
    assert all(full[p["rel"]] == p for p in subset)
    six = [p for p in full.values() if p["label"] in LABELS]
    assert _clip_plan(DataSpec()) == six  # the protocol's clips, as before labels existed
    assert DataSpec(labels=LABELS).key() == DataSpec().key() == "b06863997d"  # cache kept
    assert DataSpec(labels=("zoom_out", "roll_cw")).key() != DataSpec().key()
    with pytest.raises(ValueError, match="labels must be some of"):
        generate(Path("unused"), DataSpec(labels=("dolly",)))


def test_rendering_is_seeded_and_sources_differ() -> None:
    footage = build_source("pink_noise", 1, 0.25)
    a = render_clip(footage, "zoom_in", 6, (40, 30), np.random.default_rng(3))
    b = render_clip(footage, "zoom_in", 6, (40, 30), np.random.default_rng(3))
    c = render_clip(footage, "zoom_in", 6, (40, 30), np.random.default_rng(4))
    assert a.shape == (6, 30, 40, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    other = build_source("pink_noise", 2, 0.25)
    assert not np.array_equal(footage, other)


def test_cache_is_reused(tiny) -> None:
    first = {p: p.stat().st_mtime_ns for p in tiny.root.rglob("*") if p.is_file()}
    again = ensure_data(tiny.root.parent, TINY)
    assert again.root == tiny.root
    assert {p: p.stat().st_mtime_ns for p in again.root.rglob("*") if p.is_file()} == first
    bigger = DataSpec(**{**TINY.__dict__, "train_per_class": 2})
    assert bigger.key() != TINY.key()
