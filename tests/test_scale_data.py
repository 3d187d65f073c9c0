"""The real-size data generators (tiny fractions) and ``mmkit bench --scale``'s report.

Each generated layout is read back through mmkit's own source resolution, as ``prepare`` reads
it; the bench's numbers are never judged here, only that its ratios and verdicts follow from
them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmkit.configs import AudioConfig, VideoConfig
from mmkit.data.captions import CaptionOptions, resolve_captions
from mmkit.data.sources import resolve
from mmkit.errors import UserInputError
from mmkit.io.video import probe
from mmkit.pipelines import audio, classify, video
from mmkit.pipelines.bench import judge
from mmkit.pipelines.bench import scale_data as sd
from mmkit.pipelines.bench.scale import STEPS, TARGETS, compare
from mmkit.pipelines.bench.scale_jobs import allocate
from mmkit.pipelines.bench.scale_scenes import UCF_CLASSES, _ucf_name
from tests.conftest import run_cli

TINY = "1/2048"


def _digest(root: Path) -> str:
    """SHA-1 over every file's relative path and bytes (the marker, which holds timings, aside)."""
    h = hashlib.sha1()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != sd.MARKER):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _lines(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def test_speech_commands_layout_reads_as_speech_commands(tmp_path):
    data = sd.generate("speech_commands", TINY, tmp_path / "sc")
    root = data.path
    words = round(sum(sd.SPEECH_WORDS.values()) * Fraction(1, 2048))
    cfg = AudioConfig(dataset=str(root))
    source = resolve(str(root), classify.source_options(audio.MODALITY, cfg))
    assert source.kind == "speech_commands"
    assert source.labels == sorted(sd.SPEECH_WORDS) and len(source.labels) == 35
    assert len(source.records) == words and data.files == words + len(sd.NOISE_SECONDS)
    assert sorted(Path(f).stem for f in source.noise_files) == sorted(sd.NOISE_SECONDS)
    by_split: dict[str, set[str]] = {}
    for r in source.records:
        by_split.setdefault(r.split, set()).add(r.name)
        assert re.fullmatch(r"[0-9a-f]{8}_nohash_\d+\.wav", Path(r.name).name), r.name
        assert r.group == Path(r.name).name.split("_nohash_")[0]
    assert by_split["validation"] == set(_lines(root / "validation_list.txt"))
    assert by_split["test"] == set(_lines(root / "testing_list.txt"))
    assert set(by_split) == {"train", "validation", "test"}
    for r in source.records:  # the lists follow the dataset's own speaker hash
        expected = sd.speech_split(r.name)
        assert {"training": "train", "testing": "test"}.get(expected, expected) == r.split
    info = sf.info(source.records[0].source)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (
        16000,
        1,
        "PCM_16",
        16000,
    )
    noise = sf.info(source.noise_files[0])
    assert noise.frames >= 2 * 16000
    counts = Counter(r.label for r in source.records)
    assert set(counts) == set(sd.SPEECH_WORDS)  # every word, at least once


def test_ucf101_layout_reads_as_ucf101_in_every_fold(tmp_path):
    data = sd.generate("ucf101", TINY, tmp_path / "ucf")
    root, lists = data.path, data.path / "ucfTrainTestlist"
    assert data.files == 8
    raw = (lists / "classInd.txt").read_bytes()
    assert raw.startswith(b"1 ApplyEyeMakeup\r\n") and raw.count(b"\r\n") == 101
    for fold in (1, 2, 3):
        cfg = VideoConfig(dataset=str(root), fold=fold)
        source = resolve(str(root), classify.source_options(video.MODALITY, cfg))
        assert source.kind == "ucf101" and source.labels == list(UCF_CLASSES)
        test = {r.name.split("/")[1] for r in source.records if r.split == "test"}
        train = {r.name.split("/")[1] for r in source.records if r.split != "test"}
        assert test == {Path(n).name for n in _lines(lists / f"testlist{fold:02d}.txt")}
        assert train == {Path(n).name for n in _lines(lists / f"trainlist{fold:02d}.txt")}
        assert len(test) + len(train) == 8
    assert test and train
    for r in source.records:
        group = int(re.search(r"_g(\d\d)_c\d\d\.avi$", r.name).group(1))
        assert (r.split == "test") == (15 <= group <= 21)  # fold 3 tests groups 15-21
    clip = probe(source.records[0].source)
    assert (clip.width, clip.height, clip.fps, clip.codec) == (320, 240, 25.0, "mpeg4")
    assert 4.0 <= clip.duration <= 10.0
    # the lists spell HandstandPushups, its folder and files HandStandPushups
    assert _ucf_name(UCF_CLASSES.index("HandstandPushups"), 8, 1) == (
        "v_HandStandPushups_g08_c01.avi"
    )


def test_coco_layout_reads_as_coco_captions(tmp_path):
    data = sd.generate("coco", TINY, tmp_path / "coco")
    root = data.path
    source = resolve_captions(str(root), CaptionOptions())
    assert source.kind == "coco"
    assert Counter(r.split for r in source.records) == {"train": 10, "validation": 4}
    assert all(len(r.captions) == 5 for r in source.records)
    doc = json.loads((root / "annotations" / "captions_train2017.json").read_text())
    assert {"info", "licenses", "images", "annotations"} <= set(doc)
    assert len(doc["annotations"]) == 5 * len(doc["images"]) == 50
    for entry in doc["images"][:3]:
        assert entry["file_name"] == f"{entry['id']:012d}.jpg"
        with Image.open(root / "train2017" / entry["file_name"]) as image:
            assert image.format == "JPEG"
            assert image.size == (entry["width"], entry["height"])


def test_same_seed_same_bytes_whatever_the_workers_and_cached_on_rerun(tmp_path):
    fraction = "1/256"  # two chunks of clips: the two workers share them
    assert round(sum(sd.SPEECH_WORDS.values()) / 256) > sd.SPEECH_CHUNK
    one = sd.generate("speech_commands", fraction, tmp_path / "a", seed=3, workers=1)
    two = sd.generate("speech_commands", fraction, tmp_path / "b", seed=3, workers=2)
    other = sd.generate("speech_commands", fraction, tmp_path / "c", seed=4)
    assert _digest(one.path) == _digest(two.path) != _digest(other.path)
    assert not one.cached
    stamp = {f: f.stat().st_mtime_ns for f in one.path.rglob("*")}
    again = sd.generate("speech_commands", fraction, tmp_path / "a", seed=3)
    assert again.cached and again.files == one.files and again.params == one.params
    assert {f: f.stat().st_mtime_ns for f in one.path.rglob("*")} == stamp  # nothing rewritten
    with pytest.raises(UserInputError, match="holds data made with"):
        sd.generate("speech_commands", "1/1024", tmp_path / "a", seed=3)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("mine")
    with pytest.raises(UserInputError, match="not a generated data set"):
        sd.generate("coco", TINY, tmp_path / "d")


@pytest.mark.parametrize("kind", ["ucf101", "coco"])
def test_encoded_media_are_deterministic(tmp_path, kind):
    a = sd.generate(kind, TINY, tmp_path / "a", seed=1)
    b = sd.generate(kind, TINY, tmp_path / "b", seed=1)
    assert _digest(a.path) == _digest(b.path)


def test_fractions_scale_counts_and_refuse_nonsense(tmp_path):
    assert sd.parse_fraction("1/64") == Fraction(1, 64) == sd.parse_fraction(1 / 64)
    for bad in ("0", "2", "-1/4", "abc"):
        with pytest.raises(UserInputError, match="fraction"):
            sd.parse_fraction(bad)
    full = sum(sd.SPEECH_WORDS.values())
    assert full == 105_829 and len(sd.SPEECH_WORDS) == 35 and len(UCF_CLASSES) == 101
    assert allocate(sd.SPEECH_WORDS, Fraction(1)) == sd.SPEECH_WORDS
    quarter = allocate(sd.SPEECH_WORDS, Fraction(1, 4))
    assert sum(quarter.values()) == round(full / 4)
    assert quarter["zero"] > 2 * quarter["forward"] - 5  # the real proportions survive
    assert sd.default_dir("coco", Fraction(1, 64), 0).name == "coco-1-64-s0"
    with pytest.raises(UserInputError, match="unknown kind"):
        sd.generate("imagenet", TINY, tmp_path / "x")


def _point(fraction: str, items: int, rss: float, item_seconds: float) -> dict:
    step = {"seconds": 3.0, "net_seconds": items * item_seconds, "items": items,
            "items_per_second": 1 / item_seconds, "item_seconds": item_seconds,
            "peak_rss_mb": rss}  # fmt: skip
    return {"fraction": fraction, "store_bytes_per_item": 1000.0, **dict.fromkeys(STEPS, step)}


def test_verdicts_follow_the_numbers():
    small = _point("1/64", 100, 500.0, 0.010)
    good = compare(
        [small, _point("1", 6400, 600.0, 0.011)], {"files_per_second": {"1": 10, "2": 18}}
    )
    bad = compare(
        [small, _point("1", 6400, 700.0, 0.013)], {"files_per_second": {"1": 10, "2": 15}}
    )
    assert good["ratios"]["prepare_rss_largest_over_smallest"] == 1.2
    assert bad["ratios"]["epoch_item_seconds_largest_over_smallest"] == 1.3
    assert all(judge(good["ratios"], "cpu", TARGETS)["met"].values())
    met = judge(bad["ratios"], "cpu", TARGETS)["met"]
    assert set(met) == set(TARGETS) and not any(met.values())
    assert compare([small], None) == {"ratios": {}, "slopes_per_1000_items": {}}


def test_scale_bench_reports_every_step_and_judges_its_own_numbers(tmp_path):
    cache = tmp_path / "cache"
    proc = run_cli(
        "bench", "--scale", "--quick", "--scale-kinds", "speech_commands",
        "--scale-fractions", "1/4096,1/2048", "--device", "cpu", "--json",
        MMKIT_CACHE=str(cache),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["fractions"] == ["1/4096", "1/2048"]
    result = report["results"]["speech_commands"]
    assert result["modality"] == "audio" and result["device"] == "cpu"
    first, last = result["points"]
    assert [first["fraction"], last["fraction"]] == ["1/4096", "1/2048"]
    assert first["prepare"]["items"] == 35 < last["prepare"]["items"] == 52
    for point in (first, last):
        for step in STEPS:
            numbers = point[step]
            assert set(numbers) == {"seconds", "net_seconds", "items", "items_per_second",
                                    "item_seconds", "peak_rss_mb"}  # fmt: skip
            assert numbers["peak_rss_mb"] > 50 and numbers["seconds"] > 0 and numbers["items"] > 0
        assert point["store_bytes_per_item"] > 2 * 16000  # int16 clips of one second
        assert 0 < point["epoch"]["items"] < point["prepare"]["items"]
    assert first["eval"]["items"] == len(_lines(Path(_data(cache, "1-4096")) / "testing_list.txt"))
    rss = last["eval"]["peak_rss_mb"] / first["eval"]["peak_rss_mb"]
    assert result["ratios"]["eval_rss_largest_over_smallest"] == pytest.approx(rss, abs=1e-3)
    rates = result["prepare_workers"]["files_per_second"]
    assert result["ratios"]["prepare_workers_2_over_1"] == pytest.approx(
        rates["2"] / rates["1"], abs=1e-3
    )
    assert set(result["met"]) == set(result["targets"]) == set(TARGETS)
    for name, met in result["met"].items():
        op, bound = TARGETS[name]
        value = result["ratios"][name]
        assert met == (value >= bound if op == ">=" else value <= bound)
    assert report["all_targets_met"] == all(result["met"].values())
    assert set(result["slopes_per_1000_items"]) == {
        f"{s}_{k}" for s in ("prepare", "epoch", "eval") for k in ("net_seconds", "peak_rss_mb")
    }
    assert sorted(p.name for p in (cache / "scale").iterdir()) == [
        "speech_commands-1-2048-s0",
        "speech_commands-1-4096-s0",
    ]


def _data(cache: Path, tag: str) -> Path:
    return cache / "scale" / f"speech_commands-{tag}-s0"


def test_scale_options_need_scale_and_render_a_table(capsys):
    proc = run_cli("bench", "--scale-kinds", "coco")
    assert proc.returncode == 2 and "--scale" in proc.stderr
    proc = run_cli("bench", "--scale", "-m", "audio")
    assert proc.returncode == 2 and "--scale-kinds" in proc.stderr
    from mmkit.cli.bench_output import render_scale

    points = [_point("1/64", 100, 500.0, 0.01), _point("1", 6400, 800.0, 0.01)]
    result = {"device": "cpu", "startup_seconds": 2.0, "points": points, **compare(points, None)}
    result |= judge(result["ratios"], "cpu", TARGETS)
    render_scale({"results": {"coco": result}, "load_average": {"before": [1], "after": [1]}})
    shown = capsys.readouterr().out
    assert "prepare_rss_largest_over_smallest" in shown and "NO" in shown and "6400" in shown
    assert np.isclose(result["ratios"]["prepare_rss_largest_over_smallest"], 1.6)
