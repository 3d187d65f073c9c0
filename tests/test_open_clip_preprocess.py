"""Pretrained open_clip models get their own preprocessing (issue 8 part 4).

mmkit's image path (decode + fit into the store's ``uint8 [S, S, 3]``, then ``image_transform``
on the device) is compared with open_clip's own eval transform
(``open_clip.image_transform_v2(PreprocessCfg, is_train=False)``, what
``create_model_and_transforms`` returns as ``preprocess_val``) on real Pillow images of odd
sizes, for architectures with the preprocessing of one of their pretrained tags, taken from
open_clip's metadata: no weights are fetched, the towers are shrunk and randomly initialised
(preprocessing parity does not need real widths). ``hf-hub:ORG/REPO`` models are served from
files put into the local hub cache, since the hub is unreachable in tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.pretrained import get_pretrained_cfg
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from PIL import Image
from safetensors.torch import save_file

from mmkit.backbones.open_clip_model import create_open_clip
from mmkit.backbones.open_clip_sources import (
    hf_hub_repo,
    hub_arch_name,
    resolve_arch,
    tag_preprocess_cfg,
)
from mmkit.data.captions import CaptionOptions
from mmkit.data.mm_store import decode_image, prepare_store
from mmkit.errors import CheckpointError, UserInputError
from mmkit.io.image import load_image_array
from mmkit.pipelines import mm
from mmkit.tasks.contrastive import create_pipeline
from tests.conftest import run_cli
from tests.media.hub import cache_hub_files
from tests.media.images import write_scene_images

ODD_SIZES = ((97, 61), (300, 200), (50, 180))  # (width, height)
# (architecture, tag): shortest + bicubic, squash + bicubic (SigLIP), squash + bilinear (CLIPA),
# shortest + bilinear (MobileCLIP); open_clip has no tag with resize_mode "longest" (hub below)
TAGGED = [
    ("ViT-B-32", "openai"),
    ("ViT-B-16-SigLIP-256", "webli"),
    ("ViT-L-14-CLIPA", "datacomp1b"),
    ("MobileCLIP-S1", "datacompdr"),
]
TOKENIZER = {"context_length": 16}  # the CLIP BPE tokenizer: SigLIP's own needs the hub


def tiny_arch(image_size: int) -> dict:
    """A two-layer ViT and text tower at the architecture's real input size."""
    return {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": image_size, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32,
        },
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1},
    }  # fmt: skip


def reference_transform(image_size: int, preprocess: dict):
    """open_clip's eval transform for ``preprocess`` merged as open_clip merges a tag's."""
    cfg = merge_preprocess_dict(PreprocessCfg(size=image_size), preprocess)
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    records = write_scene_images(
        tmp_path_factory.mktemp("odd_sizes"), 3, seed=5, sizes=ODD_SIZES,
        formats=("png", "jpg", "webp"),
    )  # fmt: skip
    return [r.path for r in records]


def _loaded(pipeline, parts) -> mm.LoadedClip:
    spec = mm.pipeline_spec(parts)
    return mm.LoadedClip(pipeline.eval(), torch.nn.Identity(), spec, None, torch.device("cpu"))


# --- the fitting itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resize_mode,interpolation,fill_color",
    [("shortest", "bicubic", 0), ("squash", "bicubic", 0), ("squash", "bilinear", 0),
     ("shortest", "bilinear", 0), ("longest", "bicubic", 0), ("longest", "bilinear", 200)],
)  # fmt: skip
@pytest.mark.parametrize("size", [224, 40])
def test_pixels_equal_open_clip_eval_transform(
    odd_files: list[Path], resize_mode: str, interpolation: str, fill_color: int, size: int
) -> None:
    """Before normalisation mmkit's store image is open_clip's, to the last uint8 level."""
    transform = reference_transform(
        size, {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "resize_mode": resize_mode,
               "interpolation": interpolation, "fill_color": fill_color},
    )  # fmt: skip
    for path in odd_files:
        ours = load_image_array(
            path, size, resize_mode=resize_mode, interpolation=interpolation, fill_color=fill_color
        )
        theirs = (transform(Image.open(path)).permute(1, 2, 0) * 255).round().to(torch.uint8)
        assert ours.shape == (size, size, 3)
        assert np.array_equal(ours, theirs.numpy()), (path.name, resize_mode, interpolation)


def test_resize_modes_differ_where_they_should(odd_files: list[Path]) -> None:
    wide = odd_files[1]  # 300x200
    squash = load_image_array(wide, 50, resize_mode="squash")
    crop = load_image_array(wide, 50)
    longest = load_image_array(wide, 50, resize_mode="longest", fill_color=255)
    assert np.abs(squash.astype(int) - crop).max() > 20
    # longest: 50x33 centred on white, rows 0..7 and 41..49 are the fill
    assert (longest[:8] == 255).all() and (longest[41:] == 255).all()
    assert not (longest[9:40] == 255).all()
    with pytest.raises(UserInputError, match="resize_mode must be one of"):
        load_image_array(wide, 50, resize_mode="crop")
    with pytest.raises(UserInputError, match="interpolation must be one of"):
        load_image_array(wide, 50, interpolation="nearest")


# --- image embeddings against preprocess_val ----------------------------------------------------


@pytest.mark.parametrize("arch,tag", TAGGED)
def test_image_embeddings_match_open_clip_preprocess_val(
    arch: str, tag: str, odd_files: list[Path]
) -> None:
    """Architecture ``arch`` with ``tag``'s preprocessing: mmkit's embeddings of the files equal
    those of open_clip's ``preprocess_val`` images through the same model."""
    image_size = open_clip.get_model_config(arch)["vision_cfg"]["image_size"]
    preprocess = tag_preprocess_cfg(arch, tag)
    shipped = get_pretrained_cfg(arch, tag)
    assert preprocess["resize_mode"] == shipped["resize_mode"]
    assert preprocess["interpolation"] == shipped["interpolation"]
    torch.manual_seed(0)
    kwargs = {"model_name": arch, "model_kwargs": tiny_arch(image_size),
              "preprocess_cfg": preprocess}  # fmt: skip
    pipeline, config = create_pipeline("open_clip_model", kwargs)
    params = config.store_params
    assert params["image_size"] == image_size
    assert (params["resize_mode"], params["interpolation"]) == (
        shipped["resize_mode"], shipped["interpolation"],
    )  # fmt: skip
    assert config.image.params["mean"] == pytest.approx(shipped["mean"])
    assert config.backbone.params["preprocess_cfg"]["resize_mode"] == shipped["resize_mode"]
    transform = reference_transform(image_size, shipped)
    with torch.no_grad():
        theirs = pipeline.model.model.encode_image(
            torch.stack([transform(Image.open(p)) for p in odd_files]), normalize=True
        )
        ours = mm.encode_image_files(_loaded(pipeline, config), odd_files)
    assert (ours - theirs).abs().max().item() < 1e-5
    # the store holds the same pixels as the files decoded for sim
    for path in odd_files:
        assert np.array_equal(decode_image(path, params), load_image_array(
            path, image_size, resize_mode=shipped["resize_mode"],
            interpolation=shipped["interpolation"],
        ))  # fmt: skip


def test_store_is_per_resize(odd_files: list[Path], tmp_path: Path) -> None:
    """Stores are keyed by the fitting: a squash model never reads a centre-cropped store."""
    manifest = tmp_path / "captions.csv"
    rows = [f"{p},a picture number {i}" for i, p in enumerate(odd_files)]
    manifest.write_text("image,caption\n" + "\n".join(rows) + "\n")
    base = {"image_size": 48, "tokenizer": TOKENIZER}
    squash = {**base, "resize_mode": "squash", "interpolation": "bilinear", "fill_color": 0}
    shortest = {**base, "resize_mode": "shortest", "interpolation": "bicubic", "fill_color": 0}
    a = prepare_store(str(manifest), CaptionOptions(), squash)
    b = prepare_store(str(manifest), CaptionOptions(), shortest)
    assert a.path != b.path and a.params == squash
    rows_by_name = {Path(item.name).name: i for i, item in enumerate(a.items)}
    for path in odd_files:
        stored = np.asarray(a[rows_by_name[path.name]][0])
        assert np.array_equal(stored, decode_image(path, squash))
        assert not np.array_equal(stored, decode_image(path, shortest))
    with pytest.raises(UserInputError, match="this model needs"):
        prepare_store(str(a.path), CaptionOptions(), shortest)


# --- weights of another architecture ------------------------------------------------------------


def test_wrong_architecture_weights_are_one_line(odd_files: list[Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_open_clip("ViT-S-32", model_kwargs=tiny_arch(64))
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(weights))
    other = tiny_arch(64)
    other["text_cfg"] = dict(other["text_cfg"], width=64, heads=2)  # open_clip asserts on this
    with pytest.raises(UserInputError) as info:
        create_open_clip("ViT-S-32", pretrained=str(weights), model_kwargs=other)
    message = str(info.value)
    assert "\n" not in message and str(weights) in message and "'ViT-S-32'" in message
    assert "ln_final.bias is (32,), the model's (64,); 16 more tensors" in message
    arch = tmp_path / "wider-text.json"
    arch.write_text(json.dumps(other))
    proc = run_cli("mm", "sim", str(odd_files[0]), "a cat", "--model", str(arch),
                   "--pretrained", str(weights))  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert str(weights) in proc.stderr and "'wider-text'" in proc.stderr
    assert "Traceback" not in proc.stderr and "AssertionError" not in proc.stderr


# --- hf-hub names -------------------------------------------------------------------------------


def test_hf_hub_name_parsing() -> None:
    assert hf_hub_repo("hf-hub:timm/ViT-B-16-SigLIP") == "timm/ViT-B-16-SigLIP"
    assert hf_hub_repo("ViT-B-32") is None and hf_hub_repo("arch.json") is None
    assert hub_arch_name("timm/ViT-B-16-SigLIP") == "timm--ViT-B-16-SigLIP"
    for bad in ("hf-hub:", "hf-hub:noslash", "hf-hub:a/b/c", "hf-hub:a/../b", "hf-hub:a--b/c",
                "hf-hub:/repo", "hf-hub:org/", "hf-hub:org/re po"):  # fmt: skip
        with pytest.raises(UserInputError, match="expected hf-hub:ORG/REPO"):
            hf_hub_repo(bad)
    with pytest.raises(UserInputError, match="for a local model folder: its open_clip_config"):
        resolve_arch("local-dir:/models/x")


def test_hf_hub_offline_is_one_fast_line() -> None:
    start = time.perf_counter()
    with pytest.raises(UserInputError) as info:
        resolve_arch("hf-hub:mmkit-test-org/not-cached")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "hf-hub:mmkit-test-org/not-cached: cannot fetch open_clip_config.json (the Hugging Face "
        "hub is unreachable (offline) and it is not in the local cache)"
    )
    proc = run_cli("mm", "sim", "any.png", "a cat", "--model", "hf-hub:mmkit-test-org/not-cached")
    assert (proc.returncode, proc.stderr) == (1, f"error: {message}\n")


def test_hf_hub_model_from_the_cache_trains_and_rebuilds(
    odd_files: list[Path], tmp_path: Path, scene_set
) -> None:
    """``--model hf-hub:ORG/REPO``: the repo's config and weights (from the local hub cache),
    its ``longest`` preprocessing in sim, the store and the checkpoint, which names no hub."""
    torch.manual_seed(1)
    arch = tiny_arch(64)
    preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear",
                  "resize_mode": "longest", "fill_color": 90, "size": 64}  # fmt: skip
    source = create_open_clip("ViT-S-32", model_kwargs=arch).eval()
    weights = {k: v.contiguous() for k, v in source.model.state_dict().items()}
    save_file(weights, str(tmp_path / "w.safetensors"))
    repo = "mmkit-test/tiny-longest"
    cache_hub_files(repo, {
        "open_clip_config.json": json.dumps({"model_cfg": arch, "preprocess_cfg": preprocess}),
        "open_clip_model.safetensors": (tmp_path / "w.safetensors").read_bytes(),
    })  # fmt: skip
    loaded = mm.load_clip(model=f"hf-hub:{repo}")
    assert loaded.pipeline.model.name == "mmkit-test--tiny-longest"
    params = loaded.store_params
    assert (params["resize_mode"], params["interpolation"], params["fill_color"]) == (
        "longest", "bilinear", 90,
    )  # fmt: skip
    transform = reference_transform(64, preprocess)
    with torch.no_grad():
        theirs = source.model.encode_image(
            torch.stack([transform(Image.open(p)) for p in odd_files]), normalize=True
        )
        ours = mm.encode_image_files(loaded, odd_files)
    assert (ours - theirs).abs().max().item() < 1e-5  # the hub's weights and preprocessing
    # fine-tune from it: the checkpoint keeps the preprocessing and names no location
    cfg = mm.MMConfig(
        dataset=str(scene_set.layouts["csv_label"]), out=str(tmp_path / "run"),
        model=f"hf-hub:{repo}", epochs=1, batch_size=8, max_steps_per_epoch=1, lr=1e-9,
    )  # fmt: skip
    mm.train(cfg)
    text = (tmp_path / "run" / "best" / "config.json").read_text()
    assert "hf-hub:" not in text and "local-dir:" not in text
    config = json.loads(text)
    assert config["backbone"]["kwargs"]["model_name"] == "mmkit-test--tiny-longest"
    assert config["backbone"]["kwargs"]["preprocess_cfg"]["resize_mode"] == "longest"
    assert config["data"]["params"]["resize_mode"] == "longest"
    assert config["train"]["model"] == "mmkit-test--tiny-longest"
    rebuilt = mm.load_clip(tmp_path / "run")
    assert rebuilt.store_params == params
    with torch.no_grad():
        again = mm.encode_image_files(rebuilt, odd_files)
    assert (again - theirs).abs().max().item() < 1e-4  # lr 1e-9: the same model


def test_checkpoint_resize_settings_are_checked(tmp_path: Path) -> None:
    """A checkpoint's resize settings are data: bad ones are refused with one line."""
    from mmkit import __version__
    from mmkit.engine.checkpoint import save_checkpoint
    from mmkit.spec import CheckpointSpec

    kwargs = {"model_name": "ViT-S-32", "model_kwargs": tiny_arch(64),
              "preprocess_cfg": {"resize_mode": "squash"}}  # fmt: skip
    pipeline, parts = create_pipeline("open_clip_model", kwargs)
    config = {"mmkit_version": __version__, "modality": "mm", "task": "contrastive",
              **parts.to_json(),
              "labels": [], "prompt": "a photo of a {}", "train": {}}  # fmt: skip
    save_checkpoint(tmp_path / "ck", pipeline, CheckpointSpec.from_json(config))
    assert mm.load_clip(tmp_path / "ck").store_params["resize_mode"] == "squash"
    for where, value in (("data", "sideways"), ("backbone", "sideways")):
        bad = json.loads(json.dumps(config))
        if where == "data":
            bad["data"]["params"]["resize_mode"] = value
        else:
            bad["backbone"]["kwargs"]["preprocess_cfg"]["resize_mode"] = value
        (tmp_path / "ck" / "config.json").write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match="resize_mode must be one of") as info:
            mm.load_clip(tmp_path / "ck")
        assert "\n" not in str(info.value)


def test_model_spec_takes_a_tags_preprocessing_without_fetching() -> None:
    """``prepare`` and ``train --resume`` know a tag's preprocessing without its weights."""
    cfg = mm.MMConfig(dataset="-", model="ViT-L-14-CLIPA", pretrained="datacomp1b")
    name, kwargs = mm.model_spec(cfg)
    assert (name, kwargs["pretrained"]) == ("open_clip_model", None)
    assert kwargs["preprocess_cfg"] == tag_preprocess_cfg("ViT-L-14-CLIPA", "datacomp1b")
    assert kwargs["preprocess_cfg"]["resize_mode"] == "squash"
    assert mm.model_spec(mm.MMConfig(dataset="-", model="ViT-B-32"))[1]["preprocess_cfg"] is None
