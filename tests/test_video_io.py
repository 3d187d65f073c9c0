"""mmkit.io.video on real clips: probe, decode, scaling, rotation, VFR, padding, errors.

Also checks that the test media are what they claim (motion direction, layouts that load).
"""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from mmkit.errors import MediaError, UserInputError
from mmkit.io.video import VIDEO_EXTENSIONS, even_indices, is_video_file, probe, read_video
from tests.media.video import DIRECTIONS, encode_video, motion_clip

CODECS = {
    "h264_mp4": "h264",
    "vp9_webm": "vp9",
    "mpeg4_avi": "mpeg4",
    "h264_mkv": "h264",
    "mjpeg_mov": "mjpeg",
    "rotated": "h264",
    "vfr": "h264",
    "short": "h264",
    "odd": "h264",
    "odd_vp9": "vp9",
}


def _colour_error(decoded: np.ndarray, encoded: np.ndarray) -> float:
    """Largest per-frame mean-colour difference (codecs blur detail, not the mean)."""
    a = decoded.astype(np.float64).mean(axis=(1, 2))
    b = encoded.astype(np.float64).mean(axis=(1, 2))
    return float(np.abs(a - b).max())


@pytest.mark.parametrize("name", sorted(CODECS))
def test_probe_every_format(video_formats, name: str) -> None:
    frames = video_formats.frames[name]
    info = probe(video_formats.paths[name])
    t, h, w, _ = frames.shape
    if name == "rotated":
        h, w = w, h
    assert (info.num_frames, info.width, info.height, info.codec) == (t, w, h, CODECS[name])
    assert info.rotation == (90 if name == "rotated" else 0)
    if name != "vfr":
        assert info.fps == pytest.approx(12, abs=0.01)
        assert info.duration == pytest.approx(t / 12, abs=0.02)


@pytest.mark.parametrize("name", sorted(set(CODECS) - {"rotated"}))
def test_decode_matches_encoded_frames(video_formats, name: str) -> None:
    frames = video_formats.frames[name]
    decoded = read_video(video_formats.paths[name])
    assert decoded.dtype == np.uint8 and decoded.shape == frames.shape
    assert decoded.flags.c_contiguous
    assert _colour_error(decoded, frames) < 3.0
    # 4:2:0 chroma costs detail on the noisy textures, but the picture is the same one.
    assert np.abs(decoded.astype(int) - frames).mean() < 10
    other = motion_clip("up", num_frames=len(frames), size=frames.shape[1:3], seed=999)
    error = np.abs(decoded.astype(int) - frames).mean()
    assert error < 0.5 * np.abs(decoded.astype(int) - other).mean()


def test_rotated_clip_comes_out_upright(video_formats) -> None:
    stored = video_formats.frames["rotated"]  # 40 x 64 as stored; players turn it 90° clockwise
    decoded = read_video(video_formats.paths["rotated"]).astype(int)
    upright = np.rot90(stored, k=-1, axes=(1, 2))
    assert decoded.shape == upright.shape == (12, 64, 40, 3)
    error = np.abs(decoded - upright).mean()
    assert error < 10
    assert error < 0.6 * np.abs(decoded - np.rot90(stored, k=1, axes=(1, 2))).mean()
    assert error < 0.6 * np.abs(decoded - upright[:, ::-1, ::-1]).mean()
    # Scaling happens after rotation: the short side of the *displayed* frame is 40.
    assert read_video(video_formats.paths["rotated"], size=20).shape == (12, 32, 20, 3)


@pytest.mark.parametrize(
    ("name", "size", "expected_hw"),
    [
        ("h264_mp4", 32, (32, 32)),
        ("odd", 32, (32, 51)),  # 97x61 -> short side 32, 97 * 32 / 61 = 50.9
        ("odd_vp9", 61, (61, 97)),
        ("vp9_webm", (24, 40), (24, 40)),
        ("mpeg4_avi", 100, (100, 100)),
    ],
)
def test_short_side_scaling(video_formats, name, size, expected_hw) -> None:
    out = read_video(video_formats.paths[name], size=size, num_frames=4)
    assert out.shape == (4, *expected_hw, 3)
    resized_mean = out.astype(float).mean(axis=(0, 1, 2))
    source_mean = video_formats.frames[name].astype(float).mean(axis=(0, 1, 2))
    assert np.abs(resized_mean - source_mean).max() < 6


def test_vfr_clip_keeps_stored_frames(video_formats) -> None:
    path, frames = video_formats.paths["vfr"], video_formats.frames["vfr"]
    info = probe(path)
    # 10 frames 1/12 s apart, then 10 frames 2/12 s apart: longer than 20 frames at 12 fps.
    assert info.num_frames == 20 and info.duration > 25 / 12
    assert info.fps < 11
    decoded = read_video(path)  # source timing: no frames duplicated to fill the slow half
    assert decoded.shape[0] == 20
    assert _colour_error(decoded, frames) < 3.0
    resampled = read_video(path, fps=12)  # a constant 12 fps shows each slow frame twice
    source = [
        next(j for j in range(20) if np.array_equal(frame, decoded[j])) for frame in resampled
    ]
    assert source[:10] == list(range(10))
    # the very last frame may or may not be repeated: it has no successor to time it by
    assert source[10:20] == [10, 10, 11, 11, 12, 12, 13, 13, 14, 14]
    assert source[-3:] in ([18, 18, 19], [18, 19, 19])
    assert sorted(source) == source and set(source) == set(range(20))
    assert read_video(path, fps=12, num_frames=8).shape == (8, 64, 64, 3)


def test_short_clip_padded_by_repetition(video_formats) -> None:
    path = video_formats.paths["short"]
    every = read_video(path)
    assert every.shape[0] == 3
    padded = read_video(path, num_frames=8)
    order = [0, 0, 0, 1, 1, 2, 2, 2]
    assert np.array_equal(even_indices(3, 8), order)
    assert np.array_equal(padded, every[order])


def test_indices_in_any_order_with_repeats_and_overflow(video_formats) -> None:
    path = video_formats.paths["h264_mkv"]
    every = read_video(path)
    picked = read_video(path, indices=[5, 3, 3, 11, 40])
    assert np.array_equal(picked, every[[5, 3, 3, 11, 11]])
    assert np.array_equal(read_video(path, indices=[50, 60]), every[[11, 11]])
    assert np.array_equal(read_video(path, num_frames=4), every[[1, 4, 7, 10]])


def test_bytes_source(video_formats) -> None:
    path = video_formats.paths["vp9_webm"]
    assert np.array_equal(read_video(path.read_bytes(), size=32), read_video(path, size=32))
    assert probe(path.read_bytes()) == probe(path)


def test_option_errors(video_formats) -> None:
    path = video_formats.paths["h264_mp4"]
    with pytest.raises(UserInputError, match="num_frames or indices, not both"):
        read_video(path, num_frames=2, indices=[0])
    with pytest.raises(UserInputError, match=r"^size \(0\) must be > 0$"):
        read_video(path, size=0)
    with pytest.raises(UserInputError, match=r"^num_frames \(0\) must be > 0$"):
        read_video(path, num_frames=0)
    with pytest.raises(UserInputError, match="indices must be"):
        read_video(path, indices=[-1])


def _write_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(8000)
        fh.writeframes(np.zeros(800, dtype=np.int16).tobytes())
    return path


def test_unreadable_files_raise_media_error(tmp_path: Path, video_formats) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(MediaError, match=rf"^cannot decode {missing}: no such file$"):
        read_video(missing)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=rf"^cannot decode {empty}: empty file$"):
        probe(empty)
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"this is not a video" * 50)
    for fn in (probe, read_video):
        with pytest.raises(MediaError, match=rf"^cannot decode {garbage}: Invalid data"):
            fn(garbage)
    with pytest.raises(MediaError, match=r"^cannot decode <bytes>: Invalid data"):
        read_video(b"\x00" * 100)
    audio = _write_wav(tmp_path / "tone.wav")
    with pytest.raises(MediaError, match=rf"^cannot decode {audio}: no video stream$"):
        read_video(audio, num_frames=4)
    data = video_formats.paths["h264_mp4"].read_bytes()
    truncated = tmp_path / "truncated.mp4"  # x264 in mp4 writes its index (moov) last
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=rf"^cannot decode {truncated}: "):
        read_video(truncated)


def test_extensions() -> None:
    assert {".mp4", ".webm", ".avi", ".mkv", ".mov"} <= VIDEO_EXTENSIONS
    assert is_video_file("a/B.MP4") and not is_video_file("a/b.wav")


@pytest.mark.parametrize(("rotation", "corner"), [(90, (0, -1)), (180, (-1, -1)), (270, (-1, 0))])
def test_rotation_turns_a_marked_corner(tmp_path: Path, rotation: int, corner) -> None:
    frames = np.full((3, 32, 48, 3), 40, dtype=np.uint8)
    frames[:, :8, :8] = (230, 30, 30)  # red stored top-left
    out = read_video(encode_video(tmp_path / f"r{rotation}.mp4", frames, 12, rotation=rotation))
    assert out.shape[1:3] == ((48, 32) if rotation % 180 else (32, 48))
    red = out[1, :, :, 0].astype(int) - out[1, :, :, 1]
    y, x = np.unravel_index(np.argmax(red), red.shape)
    assert y < 8 if corner[0] == 0 else y >= out.shape[1] - 8, (rotation, y, x)
    assert x < 8 if corner[1] == 0 else x >= out.shape[2] - 8, (rotation, y, x)


def test_encode_rotation_needs_a_container_that_keeps_it(tmp_path: Path) -> None:
    frames = motion_clip("left", num_frames=3, size=32, seed=0)
    with pytest.raises(ValueError, match="does not keep rotation"):
        encode_video(tmp_path / "x.avi", frames, 12, rotation=90)
    assert probe(encode_video(tmp_path / "x.mkv", frames, 12, rotation=270)).rotation == 270


def _centroid(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Object position as a circular mean: the clips live on a torus."""
    mask = np.abs(frame.astype(int) - background).sum(-1) > 60
    out = []
    for axis, n in enumerate(mask.shape):
        coords = np.nonzero(mask)[axis] * 2 * np.pi / n
        angle = np.angle(np.exp(1j * coords).mean())
        out.append((angle % (2 * np.pi)) * n / (2 * np.pi))
    return np.array(out)


def test_motion_clip_moves_the_way_its_label_says() -> None:
    flat = np.full((48, 48, 3), 128.0, dtype=np.float32)
    step = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
    for direction in DIRECTIONS:
        for seed in range(4):
            clip = motion_clip(direction, num_frames=6, size=48, seed=seed, background=flat)
            moves = np.diff([_centroid(f, flat) for f in clip], axis=0)
            moves = (moves + 24) % 48 - 24  # shortest way round the torus
            along = moves @ np.array(step[direction])
            across = moves @ np.array(step[direction][::-1])
            # 4-8 % of 48 px per frame along the motion, only jitter across it
            assert (along > 1.5).all() and (np.abs(across) < 1.5).all(), (direction, moves)


def test_motion_position_in_one_frame_does_not_tell_the_class() -> None:
    flat = np.full((32, 32, 3), 128.0, dtype=np.float32)
    per_class = []
    for direction in DIRECTIONS:
        where = [
            _centroid(motion_clip(direction, num_frames=1, size=32, seed=s, background=flat)[0],
                      flat)
            for s in range(80)
        ]  # fmt: skip
        per_class.append(np.histogram2d(*np.array(where).T, bins=2, range=[[0, 32]] * 2)[0])
    # Every class puts the object in each quadrant about equally often (20 of 80 expected).
    assert all(np.abs(h - 20).max() <= 10 for h in per_class), per_class


def test_motion_set_holds_out_sources(motion_set) -> None:
    by_split = {s: {c.source for c in motion_set.split(s)} for s in ("train", "val", "test")}
    assert by_split == {"train": {"s0", "s1", "s2", "s3"}, "val": {"s4"}, "test": {"s5"}}
    for split, per_class in (("train", 32), ("val", 8), ("test", 8)):
        labels = [c.label for c in motion_set.split(split)]
        assert all(labels.count(d) == per_class for d in DIRECTIONS)
    assert read_video(motion_set.clips[0].path).shape == (16, 64, 64, 3)


def test_folder_and_manifest_layouts(motion_set) -> None:
    folder = motion_set.layouts["folder"]
    assert len(list((folder / "train" / "left").glob("*.mp4"))) == 32
    assert sorted(p.name for p in folder.iterdir()) == ["test", "train", "val"]
    flat = motion_set.layouts["folder_flat"]
    assert sorted(p.name for p in flat.iterdir()) == sorted(DIRECTIONS)
    with motion_set.layouts["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    lines = motion_set.layouts["jsonl"].read_text().splitlines()
    assert len(rows) == len(lines) == len(motion_set.clips)
    assert set(rows[0]) == {"path", "label", "split"} == set(json.loads(lines[0]))
    clip = motion_set.layouts["csv"].parent / rows[0]["path"]
    assert read_video(clip, num_frames=2).shape == (2, 64, 64, 3)


def test_ucf101_layout(motion_set) -> None:
    root = motion_set.layouts["ucf101"]
    raw = (root / "classInd.txt").read_bytes()
    assert raw.endswith(b"\r\n")
    classes = dict(line.split()[::-1] for line in raw.decode().splitlines())
    assert classes == {"HandstandPushups": "1", "MoveLeft": "2", "MoveRight": "3", "MoveUp": "4"}
    train = (root / "trainlist01.txt").read_text().splitlines()
    test = (root / "testlist01.txt").read_text().splitlines()
    assert len(train) == 160 and len(test) == 32
    assert "HandstandPushups/v_HandStandPushups_g01_c01.avi 1" in train
    assert "MoveUp/v_MoveUp_g06_c01.avi" in test
    for line in (train[0], test[-1]):
        path = root / line.split()[0]
        assert probe(path).codec == "mpeg4" and probe(path).num_frames == 16


@pytest.mark.parametrize("layout", ["hf_parquet", "hf_parquet_paths", "hf_disk", "hf_disk_paths"])
def test_hf_layouts_load_without_decoding(motion_set, layout: str) -> None:
    import datasets

    root = motion_set.layouts[layout]
    if layout.startswith("hf_disk"):
        ds = datasets.load_from_disk(str(root))
    else:
        files = {p.name.split("-")[0]: str(p) for p in (root / "data").glob("*.parquet")}
        ds = datasets.load_dataset("parquet", data_files=files)
    assert sorted(ds) == ["test", "train", "val"] and ds["train"].num_rows == 128
    assert ds["train"].features["label"].names == sorted(DIRECTIONS)
    if layout.endswith("paths"):
        value = ds["test"][0]["video"]
        source = Path(value) if Path(value).is_absolute() else root / value
    else:
        column = ds["test"].cast_column("video", datasets.Video(decode=False))
        source = column[0]["video"]["bytes"]
    assert read_video(source, num_frames=3, size=32).shape == (3, 32, 32, 3)
