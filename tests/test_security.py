"""Opening a file someone else made never runs code.

Every place a path can enter mmkit is offered a pickle whose unpickling would create a marker file;
each case must fail with one line on stderr (CLI) or a CheckpointError/UserInputError (library),
and the marker must never appear.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

import mmkit
from mmkit.backbones.pretrained import load_pretrained
from mmkit.engine.checkpoint import save_checkpoint
from mmkit.engine.state import TrainerState
from mmkit.errors import CheckpointError, MmkitError
from mmkit.registry import BACKBONES
from mmkit.spec import CheckpointSpec
from mmkit.tasks import build_model
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY_ARCH = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def assert_refused(proc: subprocess.CompletedProcess[str], marker: Path) -> None:
    assert not marker.exists(), "the payload ran"
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture
def pickles(tmp_path: Path, marker: Path) -> dict[str, Path]:
    """The payload as a torch file under every name a weights file goes by."""
    out = {}
    for name in ("model.pt", "model.bin", "model.pth", "payload.safetensors", "payload.ckpt"):
        path = tmp_path / "pickles" / name
        path.parent.mkdir(exist_ok=True)
        torch.save({"state_dict": Payload(marker)}, path)
        out[name] = path
    return out


def audio_config(**backbone: object) -> dict:
    return {
        "mmkit_version": mmkit.__version__,
        "modality": "audio",
        "task": "classify",
        "backbone": {"name": "audio_cnn_test", "kwargs": {}, **backbone},
        "preprocess": [{"name": "log_mel", "params": {"sample_rate": 16000, "n_mels": 32}}],
        "labels": ["no", "yes"],
        "data": {"params": {"sample_rate": 16000, "max_seconds": 30.0}},
        "train": {"duration": 1.0},
    }


@pytest.fixture
def audio_checkpoint(tmp_path: Path) -> Path:
    config = audio_config()
    spec = CheckpointSpec.from_json(config)
    return save_checkpoint(tmp_path / "ckpt", build_model(spec), spec)


def test_no_unsafe_loader_in_the_code_base() -> None:
    """Only mmkit/io/weights.py reads tensors; nothing anywhere may unpickle."""
    for path in (ROOT / "mmkit").rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(ROOT).as_posix()
        assert not re.search(r"weights_only\s*=\s*False", text), rel
        assert not re.search(r"allow_pickle\s*=\s*True", text), rel
        assert not re.search(r"\bpickle\.loads?\(|\bdill\b|\bjoblib\b", text), rel
        if rel != "mmkit/io/weights.py":
            assert "torch.load(" not in text, rel
            assert "load_file(" not in text, rel
            assert "torch.jit.load(" not in text, rel


@pytest.mark.parametrize("name", ["model.pt", "model.bin", "model.pth", "payload.safetensors"])
def test_checkpoint_given_as_a_pickle_file(
    name: str, pickles: dict[str, Path], marker: Path, audio_variants
) -> None:
    wav = str(audio_variants["wav_16"].path)
    assert_refused(run_cli("audio", "infer", wav, "--checkpoint", str(pickles[name])), marker)


@pytest.mark.parametrize("name", ["model.pt", "model.bin", "model.pth"])
def test_checkpoint_dir_with_torch_weights_only(
    name: str, audio_checkpoint: Path, pickles: dict[str, Path], marker: Path, audio_variants
) -> None:
    (audio_checkpoint / "model.safetensors").unlink()
    shutil.copy(pickles[name], audio_checkpoint / name)
    wav = str(audio_variants["wav_16"].path)
    assert_refused(run_cli("audio", "infer", wav, "--checkpoint", str(audio_checkpoint)), marker)


def test_pickle_renamed_model_safetensors(
    audio_checkpoint: Path, pickles: dict[str, Path], marker: Path, audio_variants
) -> None:
    shutil.copy(pickles["model.pt"], audio_checkpoint / "model.safetensors")
    wav = str(audio_variants["wav_16"].path)
    proc = run_cli("audio", "infer", wav, "--checkpoint", str(audio_checkpoint))
    assert_refused(proc, marker)
    assert "not a safetensors file" in proc.stderr


def test_the_reported_attack_audio_config_naming_open_clip(
    audio_checkpoint: Path, pickles: dict[str, Path], marker: Path, audio_variants
) -> None:
    """An audio checkpoint naming the open_clip backbone with a pickle as its weights."""
    config = audio_config(
        name="open_clip_model",
        kwargs={
            "model_name": "ViT-S-32",
            "pretrained": str(pickles["model.pt"]),
            "model_kwargs": {
                "pretrained_image_path": str(pickles["model.pt"]),
                "weights_only": False,
            },
        },
    )
    config["labels"] = []  # num_classes 0, as the open_clip factory wants
    (audio_checkpoint / "config.json").write_text(json.dumps(config))
    wav = str(audio_variants["wav_16"].path)
    assert_refused(run_cli("audio", "infer", wav, "--checkpoint", str(audio_checkpoint)), marker)


# what an attacker would put into a backbone's kwargs in config.json
_LOADER_KWARGS = [
    {"pretrained": "{pickle}"},
    {"weights_path": "{pickle}"},
    {"checkpoint_path": "{pickle}"},
    {"weights_only": False},
    {"model_kwargs": {"pretrained_image_path": "{pickle}", "weights_only": False}},
    {"model_kwargs": {"vision_cfg": {"timm_model_pretrained": True}}},
    {"model_name": "local-dir:{dir}"},
    {"image_kwargs": {"pretrained": "{pickle}"}},
    {"kwargs": {"cache_dir": "{dir}"}},
]


@pytest.mark.parametrize("name", sorted(BACKBONES.names()))
def test_config_kwargs_of_every_backbone(
    name: str, tmp_path: Path, pickles: dict[str, Path], marker: Path
) -> None:
    """Whatever backbone a config.json names, loader arguments are refused before any factory
    runs, and the marker never appears."""
    modality = BACKBONES.get(name).modality
    for kwargs in _LOADER_KWARGS:
        text = json.dumps(kwargs).replace("{pickle}", str(pickles["model.pt"]))
        kwargs = json.loads(text.replace("{dir}", str(pickles["model.pt"].parent)))
        if modality in ("mm", "image", "text"):
            config = {
                "modality": "mm",
                "task": "contrastive",
                "backbone": {"name": name, "kwargs": kwargs},
                "preprocess": {
                    "image": [{"name": "image_transform", "params": {}}],
                    "text": [{"name": "clip_tokenizer", "params": {}}],
                },
                "data": {"params": {"image_size": 32, "tokenizer": {}}},
            }
        else:
            config = audio_config(name=name, kwargs=kwargs)
            config["modality"] = modality
        ckpt = tmp_path / "ck"
        ckpt.mkdir(exist_ok=True)
        (ckpt / "config.json").write_text(json.dumps(config))
        save_file({"x": torch.zeros(1)}, str(ckpt / "model.safetensors"))  # a valid header
        with pytest.raises(MmkitError) as refused:
            mmkit.load_checkpoint(str(ckpt))
        assert next(iter(kwargs)) in str(refused.value)  # refused at the argument check
        assert not marker.exists(), (name, kwargs)


def test_preprocessor_params_are_checked_too(tmp_path: Path, pickles: dict[str, Path]) -> None:
    config = audio_config()
    config["preprocess"][0]["params"]["weights_path"] = str(pickles["model.pt"])
    with pytest.raises(CheckpointError, match="weights_path"):
        build_model(CheckpointSpec.from_json(config))
    config = audio_config()
    config["preprocess"][0]["params"]["sample_rate"] = {"a": object()}
    with pytest.raises(CheckpointError, match="plain data"):
        build_model(CheckpointSpec.from_json(config))


def test_mm_checkpoint_tokenizer_from_a_local_dir(tmp_path: Path, marker: Path, scene_set) -> None:
    """A tokenizer model_name with a location schema is refused."""
    from mmkit.pipelines import mm

    name, kwargs = mm.model_spec(mm.MMConfig(dataset="-", backbone="clip_lite_test"))
    pipeline, spec = mm.create_pipeline(name, kwargs)
    config = {
        "mmkit_version": mmkit.__version__,
        "modality": "mm",
        "task": "contrastive",
        **spec.to_json(),
        "labels": [],
        "prompt": "a photo of a {}",
        "train": {},
    }
    config["preprocess"]["text"]["params"]["model_name"] = f"local-dir:{tmp_path}"
    save_checkpoint(tmp_path / "ck", pipeline, CheckpointSpec.from_json(config))
    image = str(scene_set.split("test")[0].path)
    proc = run_cli("mm", "sim", image, "a red circle", "--checkpoint", str(tmp_path / "ck"))
    assert_refused(proc, marker)
    assert "location" in proc.stderr


@pytest.mark.parametrize("name", ["model.pt", "payload.safetensors"])
def test_pretrained_pickle_for_open_clip(
    name: str, tmp_path: Path, pickles: dict[str, Path], marker: Path, scene_set
) -> None:
    arch = tmp_path / "tiny-clip.json"
    arch.write_text(json.dumps(TINY_ARCH))
    image = str(scene_set.split("test")[0].path)
    proc = run_cli(
        "mm", "sim", image, "a red circle", "--model", str(arch), "--pretrained", str(pickles[name])
    )
    assert_refused(proc, marker)


def test_open_clip_tower_loaders_are_refused(pickles: dict[str, Path], marker: Path) -> None:
    from mmkit.errors import UserInputError

    for model_kwargs in (
        {"pretrained_image_path": str(pickles["model.pt"])},
        {"weights_only": False},
        {"vision_cfg": {**TINY_ARCH["vision_cfg"], "timm_model_pretrained": True}},
        {"text_cfg": {**TINY_ARCH["text_cfg"], "hf_model_pretrained": True}},
    ):
        with pytest.raises(UserInputError):
            mmkit.create_backbone(
                "open_clip_model", model_name="ViT-S-32", model_kwargs=model_kwargs
            )
    assert not marker.exists()


def test_torchvision_pretrained_pickle(pickles: dict[str, Path], marker: Path) -> None:
    with pytest.raises(CheckpointError, match="refused"):
        load_pretrained(mmkit.create_backbone("mc3_18", num_classes=2), pickles["model.pth"])
    assert not marker.exists()


def test_resume_state_pickle(
    tmp_path: Path, pickles: dict[str, Path], marker: Path, speech_sources: dict[str, Path]
) -> None:
    run = tmp_path / "run"
    config = audio_config()
    spec = CheckpointSpec.from_json(config)
    model = build_model(spec)
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(run / "last", model, spec, optimizer=opt, trainer_state=TrainerState())
    shutil.copy(pickles["model.pt"], run / "last" / "optimizer.safetensors")
    proc = run_cli(
        "audio",
        "train",
        "--dataset",
        str(speech_sources["csv"]),
        "--out",
        str(run),
        "--backbone",
        "audio_cnn_test",
        "--n-mels",
        "32",
        "--resume",
        "--epochs",
        "1",
        "--json",
    )
    assert_refused(proc, marker)


def test_store_extra_pickle(tmp_path: Path, marker: Path, speech_sources: dict[str, Path]) -> None:
    from mmkit.pipelines import audio

    store = audio.prepare(
        audio.AudioConfig(dataset=str(speech_sources["csv"])), out=tmp_path / "store"
    )
    manifest = json.loads((store.path / "mmkit_store.json").read_text())
    manifest["extras"]["noise"] = {"dtype": "|O", "shape": [1]}
    (store.path / "mmkit_store.json").write_text(json.dumps(manifest))
    np.save(store.path / "noise.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True)
    proc = run_cli(
        "audio",
        "train",
        "--dataset",
        str(store.path),
        "--out",
        str(tmp_path / "run"),
        "--backbone",
        "audio_cnn_test",
        "--epochs",
        "1",
        "--json",
    )
    assert_refused(proc, marker)


def test_yaml_config_cannot_build_objects(
    tmp_path: Path, marker: Path, speech_sources: dict[str, Path]
) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(f"epochs: !!python/object/apply:builtins.open [{marker}, w]\n")
    proc = run_cli(
        "audio",
        "train",
        "--dataset",
        str(speech_sources["csv"]),
        "--out",
        str(tmp_path / "run"),
        "--config",
        str(config),
        "--json",
    )
    assert_refused(proc, marker)
    assert yaml.safe_load("a: 1") == {"a": 1}


def test_the_reported_attack_mm_sim(
    tmp_path: Path, pickles: dict[str, Path], marker: Path, scene_set
) -> None:
    """An mm checkpoint whose open_clip kwargs point open_clip's loaders at a pickle."""
    from mmkit.pipelines import mm

    name, kwargs = mm.model_spec(mm.MMConfig(dataset="-", backbone="clip_lite_test"))
    pipeline, spec = mm.create_pipeline(name, kwargs)
    config = {
        "mmkit_version": mmkit.__version__,
        "modality": "mm",
        "task": "contrastive",
        **spec.to_json(),
        "labels": [],
        "prompt": "a photo of a {}",
        "train": {},
    }
    save_checkpoint(tmp_path / "ck", pipeline, CheckpointSpec.from_json(config))
    payload = str(pickles["model.pt"])
    config["backbone"] = {
        "name": "open_clip_model",
        "kwargs": {
            "model_name": "ViT-S-32",
            "pretrained": payload,
            "model_kwargs": {**TINY_ARCH, "pretrained_image_path": payload, "weights_only": False},
        },
    }
    (tmp_path / "ck" / "config.json").write_text(json.dumps(config))
    image = str(scene_set.split("test")[0].path)
    proc = run_cli("mm", "sim", image, "a red circle", "--checkpoint", str(tmp_path / "ck"))
    assert_refused(proc, marker)
    assert "'pretrained' loads weights" in proc.stderr
