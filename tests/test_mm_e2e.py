"""End to end on rendered scenes: CLIP-lite trained through the CLI, then retrieval, zero-shot
and ``mm sim`` on held-out scenes; every caption layout; open_clip weights from a local file.

The scenes (tests/fixtures/images.py) are shapes of a colour at a position with captions that
are exactly true, so retrieval is only possible by matching what the captions say to what the
pixels show; the 48 test scenes are never seen in training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import mmkit
from mmkit.errors import UserInputError
from mmkit.io.image import load_image_array
from mmkit.pipelines import mm
from mmkit.registry import create_preprocessor
from mmkit.tasks.contrastive import flatten
from tests.conftest import run_cli
from tests.fixtures.images import CaptionedImage, SceneSet
from tests.test_mm_blocks import TINY_OPEN_CLIP  # open_clip's ViT-S-32 shrunk

# the demo's model: a small conv image tower learns these scenes fast on a CPU
MODEL = {
    "backbone": "clip_lite_test",
    "backbone_kwargs": {
        "image_tower": "image_resnet",
        "image_kwargs": {"width": 16, "output_dim": 64, "head_width": 32},
    },
    "context_length": 24,
    "prompt": "a picture of a {}",
}
EPOCHS = 20
TEST_IMAGES, TEST_CAPTIONS = 48, 96


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, scene_set: SceneSet) -> Path:
    """clip_lite_test trained on the labelled CSV manifest through the CLI, JSON output."""
    root = tmp_path_factory.mktemp("mm_runs")
    config = root / "clip.yaml"
    config.write_text(yaml.safe_dump(MODEL))
    out = root / "run"
    proc = run_cli(
        "mm",
        "train",
        "--dataset",
        str(scene_set.layouts["csv_label"]),
        "--out",
        str(out),
        "--config",
        str(config),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "32",
        "--lr",
        "0.001",
        "--seed",
        "0",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"run_dir", "best_checkpoint", "epochs", "best_metric", "skipped"}
    assert result["epochs"] == EPOCHS and set(result["best_metric"]) == {"mean_recall"}
    return out


def _cfg(scene_set: SceneSet, layout: str = "csv_label", **kw: object) -> mm.MMConfig:
    return mm.MMConfig(dataset=str(scene_set.layouts[layout]), **{**MODEL, **kw})


def test_training_loss_decreases_and_run_files(trained: Path, scene_set: SceneSet) -> None:
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows]
    print("train loss per epoch", [round(x, 3) for x in losses])
    assert len(rows) == EPOCHS
    assert losses[0] > 2.5  # about chance (log 32 = 3.47) in the first epoch
    assert losses[-1] < 0.6 * losses[0]
    assert {"best", "last", "curves.png", "config.yaml"} <= {p.name for p in trained.iterdir()}
    config = json.loads((trained / "best" / "config.json").read_text())
    assert (config["modality"], config["task"]) == ("mm", "contrastive")
    assert config["labels"] == sorted(scene_set.labels)
    assert config["preprocess"]["text"][0]["params"]["context_length"] == 24
    assert config["format_version"] == 2
    assert config["data"]["params"]["image_size"] == 64


def test_held_out_retrieval_and_zero_shot(trained: Path, scene_set: SceneSet) -> None:
    proc = run_cli(
        "mm",
        "eval",
        "--checkpoint",
        str(trained),
        "--dataset",
        str(scene_set.layouts["csv_label"]),
        "--split",
        "test",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["num_images"], report["num_pairs"]) == (TEST_IMAGES, TEST_CAPTIONS)
    figures = {}
    for direction in ("image_to_text", "text_to_image"):
        metrics = report[direction]
        assert set(metrics) == {"R@1", "R@5", "R@10", "mean_rank", "median_rank"}
        figures[direction] = {k: round(v, 3) for k, v in metrics.items()}
        # chance is about K / 48 either way (2 captions per image among 96)
        assert metrics["R@1"] > 4 * 1 / TEST_IMAGES
        assert metrics["R@5"] > 2.5 * 5 / TEST_IMAGES
        assert metrics["R@10"] > 1.6 * 10 / TEST_IMAGES
    print("held-out retrieval", figures, "zero-shot", round(report["zero_shot_accuracy"], 3))
    assert 0.0 <= report["zero_shot_accuracy"] <= 1.0
    assert report["zero_shot"]["labels"] == sorted(scene_set.labels)
    assert report["zero_shot"]["prompt"] == "a picture of a {}"
    assert (trained / "eval" / "captions.csv-test.json").is_file()


def _distinct_test_scenes(scene_set: SceneSet, n: int) -> list[CaptionedImage]:
    """Held-out images whose canonical captions all differ (first ``n``, in file order)."""
    chosen, seen = [], set()
    for record in scene_set.split("test"):
        if record.captions[0] not in seen:
            seen.add(record.captions[0])
            chosen.append(record)
    return chosen[:n]


def test_sim_ranks_the_true_caption_first(trained: Path, scene_set: SceneSet) -> None:
    sample = _distinct_test_scenes(scene_set, 8)
    proc = run_cli(
        "mm",
        "sim",
        *(str(r.path) for r in sample),
        *(r.captions[0] for r in sample),
        "--checkpoint",
        str(trained),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["image"] for r in results] == [str(r.path) for r in sample]
    right = 0
    for entry, record in zip(results, sample, strict=True):
        scores = entry["scores"]
        assert sorted(s["text"] for s in scores) == sorted(r.captions[0] for r in sample)
        assert all(set(s) == {"text", "similarity", "probability"} for s in scores)
        sims = [s["similarity"] for s in scores]
        assert sims == sorted(sims, reverse=True) and all(-1.0 <= x <= 1.0 for x in sims)
        assert sum(s["probability"] for s in scores) == pytest.approx(1.0, abs=1e-5)
        right += scores[0]["text"] == record.captions[0]
    print(f"mm sim: true caption first for {right}/{len(sample)} held-out images")
    assert right >= 5  # chance: 1 in 8


def test_same_scores_twice_and_after_reload(trained: Path, scene_set: SceneSet) -> None:
    record = scene_set.split("test")[0]
    texts = [record.captions[0], "a yellow cross at the top"]
    args = ("mm", "sim", str(record.path), *texts, "--checkpoint", str(trained / "best"), "--json")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    result = json.loads(first.stdout)
    assert set(result) == {"image", "scores"} and result["image"] == str(record.path)
    # in this process, from the same files: the very same numbers
    loaded = mm.load_clip(trained)
    assert mm.sim([str(record.path)], texts, loaded) == result
    # several images and one text rank the images
    images = [str(r.path) for r in scene_set.split("test")[:3]]
    ranked = mm.sim(images, [texts[0]], loaded)
    assert ranked["text"] == texts[0] and sorted(s["image"] for s in ranked["scores"]) == images
    # the generic loader rebuilds the same model from config.json alone
    generic = mmkit.load_checkpoint(str(trained))
    tokens = loaded.tokenizer(texts)
    assert torch.equal(generic.model.encode_texts(tokens), loaded.pipeline.encode_texts(tokens))
    # the validation metrics the trainer saved with the best checkpoint, recomputed from disk
    saved = json.loads((trained / "best" / "config.json").read_text())["metrics"]
    again = flatten(mm.evaluate(trained, _cfg(scene_set), split="validation"))
    assert again == {k: v for k, v in saved.items() if k in again}
    assert again["mean_recall"] == saved["mean_recall"]


def test_unlabelled_data_has_no_zero_shot(trained: Path, scene_set: SceneSet) -> None:
    report = mm.evaluate(trained, _cfg(scene_set, "jsonl"), split="test")
    assert "zero_shot_accuracy" not in report and report["num_images"] == TEST_IMAGES


@pytest.mark.parametrize(
    "layout",
    [
        "csv",
        "csv_label",
        "jsonl",
        "caption_folder",
        "flickr8k",
        "coco",
        "hf_parquet",
        "hf_parquet_list",
        "hf_disk",
        "hf_disk_str",
    ],
)
def test_every_caption_layout_prepares(layout: str, scene_set: SceneSet, tmp_path: Path) -> None:
    params = {"image_size": 32, "tokenizer": {"context_length": 24}}
    store = mm.prepare(_cfg(scene_set, layout), params=params, out=tmp_path / "store")
    summary = mm.summary(store)
    splits = {"train": 240, "validation": 32, "test": 48}
    assert summary["num_images"] == 320 and summary["num_captions"] == 640
    assert summary["splits"] == {s: {"images": n, "captions": 2 * n} for s, n in splits.items()}
    labelled = layout == "csv_label" or layout.startswith("hf_")
    assert set(summary["labels"]) == (set(scene_set.labels) if labelled else set())
    # every caption belongs to the right image, and every image has the right label
    truth = {r.path.stem: r for r in scene_set.records}
    owners = store.extra("caption_image")
    assert store.extra("tokens").shape == (640, 24)
    for caption, owner in zip(store.meta["captions"], owners, strict=True):
        record = truth[Path(store.items[owner].name).stem]
        assert caption in record.captions
        assert store.items[owner].split == record.split
        assert store.items[owner].label == (record.label if labelled else "")


@pytest.mark.parametrize("layout", ["hf_parquet", "hf_parquet_list", "hf_disk", "hf_disk_str"])
def test_hf_caption_layouts_stream_without_a_datasets_cache(
    layout: str, scene_set: SceneSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parquet and ``save_to_disk`` captions are read from their files a batch at a time, as
    audio and video are: nothing is converted into the ``datasets`` cache, and image bytes
    stay in the files until the store reads them."""
    import datasets

    from mmkit.data.captions import CaptionOptions, resolve_captions
    from mmkit.data.hf_tables import RowBytes, stream_sources

    cache = tmp_path / "datasets-cache"
    cache.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    data = resolve_captions(str(scene_set.layouts[layout]), CaptionOptions())
    assert list(cache.iterdir()) == []
    assert data.kind == ("hf_parquet" if layout.startswith("hf_parquet") else "hf_disk")
    assert data.labels == list(scene_set.labels)
    truth = {(r.path.name, r.captions, r.split, r.label) for r in scene_set.records}
    got = {(r.name, r.captions, r.split, r.label) for r in data.records}
    assert got == truth and len(data.records) == len(scene_set.records)
    assert all(isinstance(r.source, RowBytes) for r in data.records)
    by_name = {r.path.name: r.path for r in scene_set.records}
    for record, source in zip(data.records, stream_sources(data.records), strict=True):
        assert source == by_name[record.name].read_bytes()


def test_hub_id_offline_is_one_line_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = mm.MMConfig(dataset="mmkit-test-org/no-such-captions")
    with pytest.raises(UserInputError) as info:
        mm.prepare(cfg, params={"image_size": 32, "tokenizer": {"context_length": 24}})
    assert "\n" not in str(info.value) and "mmkit-test-org/no-such-captions" in str(info.value)


def test_prepare_skips_unreadable_images(
    scene_set: SceneSet, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    good = scene_set.split("train")[:3]
    rows = [f"{r.path},{r.captions[0]}" for r in good]
    rows += [f"{odd_images[k]},a broken picture" for k in ("corrupt", "truncated", "empty")]
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,caption\n" + "\n".join(rows) + "\n")
    proc = run_cli(
        "mm",
        "prepare",
        "--dataset",
        str(manifest),
        "--out",
        str(tmp_path / "store"),
        "--context-length",
        "24",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["num_images"] == 3 and summary["num_captions"] == 3
    skipped = [s["name"] for s in summary["skipped"]]
    assert skipped == [str(odd_images[k]) for k in ("corrupt", "truncated", "empty")]


def test_open_clip_weights_from_a_local_file(scene_set: SceneSet, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from mmkit.backbones.open_clip_model import create_open_clip

    torch.manual_seed(3)
    source = create_open_clip("ViT-S-32", model_kwargs=TINY_OPEN_CLIP).eval()
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(weights))
    arch = tmp_path / "tiny-clip.json"
    arch.write_text(json.dumps(TINY_OPEN_CLIP))
    record = scene_set.split("test")[0]
    texts = [record.captions[0], "a green square at the bottom"]
    proc = run_cli(
        "mm",
        "sim",
        str(record.path),
        *texts,
        "--model",
        str(arch),
        "--pretrained",
        str(weights),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    with torch.no_grad():
        image = torch.from_numpy(load_image_array(record.path, 64))[None]
        image_f = source.encode_image(create_preprocessor("image_transform").eval()(image))
        expected = (image_f @ source.encode_text(source.tokenizer(texts)).T)[0]
    got = {s["text"]: s["similarity"] for s in result["scores"]}
    assert [got[t] for t in texts] == pytest.approx(expected.tolist(), abs=1e-5)
    # the same weights start a training run; its checkpoint rebuilds without the JSON file
    cfg = mm.MMConfig(
        dataset=str(scene_set.layouts["csv_label"]),
        out=str(tmp_path / "run"),
        model=str(arch),
        pretrained=str(weights),
        epochs=1,
        batch_size=8,
        max_steps_per_epoch=2,
        lr=1e-9,
    )
    mm.train(cfg)
    arch.unlink()
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["backbone"]["kwargs"]["pretrained"] is None
    proc = run_cli(
        "mm", "sim", str(record.path), *texts, "--checkpoint", str(tmp_path / "run"), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    tuned = {s["text"]: s["similarity"] for s in json.loads(proc.stdout)["scores"]}
    assert [tuned[t] for t in texts] == pytest.approx([got[t] for t in texts], abs=1e-4)


def test_errors_are_one_line(
    trained: Path, odd_images: dict[str, Path], scene_set: SceneSet, tmp_path: Path
) -> None:
    proc = run_cli("mm", "sim", str(odd_images["corrupt"]), "a red circle", "-k", str(trained))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: cannot decode")
    image = str(scene_set.split("test")[0].path)
    proc = run_cli("mm", "sim", image, "a red circle", "-k", str(tmp_path / "missing"))
    assert (proc.returncode, proc.stderr.strip()) == (
        1,
        f"error: checkpoint not found: {tmp_path / 'missing'}",
    )
    assert run_cli("mm", "sim", image, "a red circle").returncode == 2  # no checkpoint or model
    assert run_cli("mm", "sim", image, "-k", str(trained)).returncode == 2  # no text
    proc = run_cli("mm", "eval", "--dataset", str(scene_set.layouts["csv"]))
    assert proc.returncode == 2


def test_eval_of_a_split_less_manifest_scores_every_image(
    trained: Path, scene_set: SceneSet, tmp_path: Path
) -> None:
    from tests.media.image_layouts import write_csv_manifest

    held_out = scene_set.split("test")
    manifest = write_csv_manifest(tmp_path / "nosplit", held_out, with_split=False)
    proc = run_cli("mm", "eval", "--checkpoint", str(trained), "--dataset", str(manifest), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["split"], report["num_images"]) == ("all", len(held_out))
    assert report["num_pairs"] == sum(len(r.captions) for r in held_out)
    assert f"scoring all {len(held_out)} items" in proc.stderr
