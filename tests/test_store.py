"""mmkit.data.store: the prepared store round trip, atomic replace, abort, and bad paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmkit.data.store import MANIFEST, Store, is_store
from mmkit.data.store_writer import StoreWriter
from mmkit.errors import UserInputError


def _audio_items(rng):
    """(name, label, split, group, int16 array) with ragged lengths."""
    specs = [
        ("a.wav", "yes", "train", "spk1", 5),
        ("b.wav", "no", "train", "spk2", 3),
        ("c.wav", "yes", "validation", "spk3", 8),
        ("d.wav", "no", "test", "spk4", 1),
        ("e.wav", "no", "train", "spk1", 4),
    ]
    return [
        (n, lab, s, g, rng.integers(-32768, 32767, size=length, dtype=np.int16))
        for n, lab, s, g, length in specs
    ]


def _write_audio(out, items, labels=("no", "yes"), rate=1000, **info):
    writer = StoreWriter(
        out, modality="audio", dtype="int16", item_shape=(), params={"sample_rate": rate}
    )
    for name, label, split, group, arr in items:
        writer.add(arr, name=name, label=label, split=split, group=group)
    return writer, writer.commit(list(labels), **info)


def _hidden_entries(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_ragged_int16_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    items = _audio_items(rng)
    writer, store = _write_audio(tmp_path / "store", items, fingerprint="abc")
    writer.skip("broken.wav", "not a sound file")
    assert is_store(tmp_path / "store")

    reopened = Store(tmp_path / "store")
    for s in (store, reopened):
        assert len(s) == 5
        assert s.modality == "audio"
        assert s.params == {"sample_rate": 1000}
        assert s.labels == ["no", "yes"]
        assert s.item_shape == ()
        assert s.data.dtype == np.int16
        for i, (name, label, split, group, arr) in enumerate(items):
            assert s[i].dtype == np.int16
            np.testing.assert_array_equal(s[i], arr)
            assert (s.items[i].name, s.items[i].label, s.items[i].split, s.items[i].group) == (
                name,
                label,
                split,
                group,
            )
        assert s.meta["fingerprint"] == "abc"  # commit(**info) lands in the manifest
    # targets index into labels (no=0, yes=1)
    np.testing.assert_array_equal(reopened.targets, [1, 0, 1, 0, 0])
    assert reopened.targets.dtype == np.int64
    assert reopened.indices("train") == [0, 1, 4]
    assert reopened.indices("validation") == [2]
    assert reopened.indices("test") == [3]
    assert reopened.indices("nope") == []
    # the data file holds exactly the items, back to back
    assert (tmp_path / "store" / "data.bin").stat().st_size == 2 * (5 + 3 + 8 + 1 + 4)


def test_skipped_and_summary(tmp_path):
    rng = np.random.default_rng(1)
    writer = StoreWriter(
        tmp_path / "s", modality="audio", dtype="int16", item_shape=(), params={"sample_rate": 4}
    )
    for name, label, split, group, arr in _audio_items(rng):
        writer.add(arr, name=name, label=label, split=split, group=group)
    writer.skip("x.ogg", "cannot decode x.ogg")
    writer.skip("y.wav", "no samples")
    writer.commit(["no", "yes"])
    store = Store(tmp_path / "s")
    assert store.skipped == [
        {"name": "x.ogg", "reason": "cannot decode x.ogg"},
        {"name": "y.wav", "reason": "no samples"},
    ]
    summary = store.summary()
    assert summary["num_items"] == 5
    assert summary["modality"] == "audio"
    assert summary["labels"] == ["no", "yes"]
    assert summary["splits"] == {"train": 3, "validation": 1, "test": 1}
    assert summary["per_class"] == {
        "train": {"yes": 1, "no": 2},
        "validation": {"yes": 1},
        "test": {"no": 1},
    }
    # seconds per split = samples / sample_rate
    assert summary["seconds"] == pytest.approx(
        {"train": 12 / 4, "validation": 8 / 4, "test": 1 / 4}
    )
    assert summary["skipped"] == store.skipped
    assert summary["path"] == str(tmp_path / "s")
    json.dumps(summary)  # the prepare --json report


def test_frames_round_trip_and_extras(tmp_path):
    rng = np.random.default_rng(2)
    clips = [rng.integers(0, 256, size=(t, 4, 5, 3), dtype=np.uint8) for t in (2, 3, 1)]
    writer = StoreWriter(
        tmp_path / "v", modality="video", dtype="uint8", item_shape=(4, 5, 3), params={"fps": 2}
    )
    for i, clip in enumerate(clips):
        writer.add(clip, name=f"c{i}.mp4", label=["left", "right"][i % 2], split="train", group="")
    noise = rng.standard_normal((3, 7)).astype(np.float32)
    writer.add_extra("noise", noise)
    writer.commit(["left", "right"])

    store = Store(tmp_path / "v")
    assert store.item_shape == (4, 5, 3)
    assert store.data.shape == (6, 4, 5, 3)
    for i, clip in enumerate(clips):
        assert store[i].shape == clip.shape
        np.testing.assert_array_equal(store[i], clip)
    extra = store.extra("noise")
    assert extra.dtype == np.float32
    np.testing.assert_array_equal(extra, noise)
    assert store.meta["extras"] == {"noise": {"dtype": "<f4", "shape": [3, 7]}}
    assert store.extra("missing") is None
    summary = store.summary()
    assert summary["seconds"] == pytest.approx({"train": 6 / 2})
    assert summary["per_class"]["train"] == {"left": 2, "right": 1}


def test_wrong_item_shape_is_refused(tmp_path):
    writer = StoreWriter(
        tmp_path / "v", modality="video", dtype="uint8", item_shape=(4, 5, 3), params={}
    )
    with pytest.raises(ValueError, match=r"item shape \(5, 4, 3\)"):
        writer.add(np.zeros((2, 5, 4, 3), np.uint8), name="x", label="a", split="train", group="")
    writer.abort()


def test_values_are_cast_to_store_dtype(tmp_path):
    writer = StoreWriter(tmp_path / "s", modality="audio", dtype="int16", item_shape=(), params={})
    writer.add(np.array([1, -2, 3], dtype=np.int64), name="a", label="x", split="train", group="")
    store = writer.commit(["x"])
    assert store[0].dtype == np.int16
    np.testing.assert_array_equal(store[0], [1, -2, 3])
    assert "seconds" not in store.summary()  # no rate, no seconds


def test_empty_store(tmp_path):
    writer = StoreWriter(tmp_path / "e", modality="audio", dtype="int16", item_shape=(), params={})
    writer.skip("only.wav", "unreadable")
    store = writer.commit([])
    assert len(store) == 0
    assert store.data.shape == (0,)
    assert store.summary()["splits"] == {"train": 0, "validation": 0, "test": 0}
    assert Store(tmp_path / "e").skipped == [{"name": "only.wav", "reason": "unreadable"}]


def test_commit_replaces_existing_store_atomically(tmp_path):
    out = tmp_path / "store"
    rng = np.random.default_rng(3)
    old_items = _audio_items(rng)
    _write_audio(out, old_items, fingerprint="old")

    new = rng.integers(-100, 100, size=11, dtype=np.int16)
    writer = StoreWriter(
        out, modality="audio", dtype="int16", item_shape=(), params={"sample_rate": 8}
    )
    writer.add(new, name="z.wav", label="z", split="test", group="")
    # while the new store is being written, the old one is intact and readable
    during = Store(out)
    assert during.meta["fingerprint"] == "old" and len(during) == 5
    np.testing.assert_array_equal(during[2], old_items[2][4])
    assert len(_hidden_entries(tmp_path)) == 1  # the writer's temp dir, next to the target

    writer.commit(["z"], fingerprint="new")
    after = Store(out)
    assert after.meta["fingerprint"] == "new"
    assert len(after) == 1 and after.labels == ["z"]
    np.testing.assert_array_equal(after[0], new)
    # nothing of the old store or the temp dir is left behind
    assert _hidden_entries(tmp_path) == []
    assert sorted(p.name for p in out.iterdir()) == ["data.bin", MANIFEST]


def test_abort_leaves_nothing(tmp_path):
    writer = StoreWriter(
        tmp_path / "store", modality="audio", dtype="int16", item_shape=(), params={}
    )
    writer.add(np.ones(4, np.int16), name="a", label="x", split="train", group="")
    writer.add_extra("noise", np.zeros(3, np.int16))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    assert not is_store(tmp_path / "store")


def test_abort_keeps_existing_store(tmp_path):
    out = tmp_path / "store"
    _write_audio(out, _audio_items(np.random.default_rng(4)), fingerprint="keep")
    writer = StoreWriter(out, modality="audio", dtype="int16", item_shape=(), params={})
    writer.add(np.ones(4, np.int16), name="a", label="x", split="train", group="")
    writer.abort()
    assert Store(out).meta["fingerprint"] == "keep"
    assert _hidden_entries(tmp_path) == []


def test_opening_a_non_store_is_user_error(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "data.bin").write_bytes(b"\0\0")
    with pytest.raises(UserInputError, match="not a prepared mmkit store"):
        Store(tmp_path / "plain")
    with pytest.raises(UserInputError, match="not a prepared mmkit store"):
        Store(tmp_path / "missing")
    assert not is_store(tmp_path / "plain")


def test_other_format_version_is_user_error(tmp_path):
    out = tmp_path / "store"
    _write_audio(out, _audio_items(np.random.default_rng(5)))
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["format_version"] = 999
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserInputError, match="format_version is 999, not 1"):
        Store(out)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(total_length=m["total_length"] + 1000), "data.bin: holds"),
        (lambda m: m["items"][0].update(label="maybe"), r"items\[0\].label 'maybe' is not"),
        (lambda m: m["items"][1].update(offset=10**9), r"items\[1\] reaches past"),
        (lambda m: m["items"].append(5), r"items\[5\] is not a store item"),
        (lambda m: m.update(dtype="|O"), "dtype must be one of"),
        (lambda m: m.update(item_shape=["x"]), "item_shape must be"),
        (lambda m: m.update(labels="yes"), "labels must be a JSON list"),
        (lambda m: m.update(extras={"../x": {}}), "extras must map plain names"),
    ],
)
def test_a_damaged_manifest_is_one_line(tmp_path, edit, message):
    _, store = _write_audio(tmp_path / "s", _audio_items(np.random.default_rng(0)))
    manifest = json.loads((store.path / MANIFEST).read_text())
    edit(manifest)
    (store.path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserInputError, match=message) as err:
        Store(store.path)
    assert "\n" not in str(err.value)


def test_a_truncated_data_file_is_refused(tmp_path):
    _, store = _write_audio(tmp_path / "s", _audio_items(np.random.default_rng(0)))
    data = store.path / "data.bin"
    data.write_bytes(data.read_bytes()[:7])
    with pytest.raises(UserInputError, match="damaged"):
        Store(store.path)


def test_a_damaged_cached_store_is_prepared_again(tmp_path):
    from mmkit.data.store import open_cached

    notes = []

    class Notes:
        def message(self, text):
            notes.append(text)

    _, store = _write_audio(tmp_path / "s", _audio_items(np.random.default_rng(0)),
                            fingerprint="abc")
    assert open_cached(store.path, "abc", Notes()) is not None
    assert open_cached(store.path, "other", Notes()) is None  # stale: rebuilt silently
    (store.path / "data.bin").write_bytes(b"")
    assert open_cached(store.path, "abc", Notes()) is None
    assert notes[-1].startswith("preparing again: the cached store is damaged")
