"""Pretrained weights (mmkit/backbones/pretrained.py): tags resolve to torch's cache file names,
the files written by torchvision's and torchaudio's own constructors load key for key, and every
failure is one line. No network: a download is simulated or refused."""

from __future__ import annotations

import re
import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.models import video as tv_video

from mmkit import create_backbone
from mmkit.backbones.pretrained import load_pretrained, resolve_weights, weights_dir, weights_spec
from mmkit.errors import CheckpointError, UserInputError
from mmkit.registry import BACKBONES

VIDEO = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t"]
SSL = {"wav2vec2_base": "WAV2VEC2_BASE", "hubert_base": "HUBERT_BASE",
       "wavlm_base": "WAVLM_BASE", "wavlm_base_plus": "WAVLM_BASE_PLUS"}  # fmt: skip


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$TORCH_HOME``, and no network: a download fails as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert weights_dir() == tmp_path / "torch" / "hub" / "checkpoints"
    return weights_dir()


def _save(state: dict[str, torch.Tensor], name: str, tag: str) -> Path:
    path = weights_dir() / weights_spec(name, tag).file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _assert_loaded(
    model: torch.nn.Module, file_state: dict[str, torch.Tensor], *, head: bool = True
) -> None:
    """Every tensor of the file (in the model's names) is the model's (the head's if ``head``)."""
    adapt = getattr(model, "adapt_pretrained", lambda s: s)
    own = model.state_dict()
    for key, value in adapt(dict(file_state)).items():
        if head or not key.startswith("fc."):
            assert torch.equal(own[key], value), key


@pytest.mark.parametrize("name", VIDEO)
def test_specs_are_torchvisions(name: str) -> None:
    """The declared preprocessing is the Weights' own: transforms, clip_len, file name."""
    spec = weights_spec(name, "kinetics400")
    weights = spec.published()
    assert isinstance(weights, tv_video.__dict__[type(weights).__name__])
    assert spec.file_name == weights.url.rsplit("/", 1)[1] and spec.url == weights.url
    preset = weights.transforms()
    assert preset.crop_size == [spec.size, spec.size] and preset.resize_size == list(spec.resize)
    torch.testing.assert_close(torch.tensor(preset.mean), torch.tensor(spec.mean))
    torch.testing.assert_close(torch.tensor(preset.std), torch.tensor(spec.std))
    assert f"`clip_len={spec.frames}`" in weights.meta["_docs"]
    assert spec.num_classes == len(weights.meta["categories"]) == 400
    if name.startswith("mvit"):  # a fixed clip shape, declared on the model too
        assert weights.meta["min_temporal_size"] == spec.frames == 16
        model = create_backbone(name, num_classes=0)
        assert (model.num_frames, model.size) == (spec.frames, spec.size) == (16, 224)
    assert spec.preprocessing() == {
        "frames": spec.frames, "size": spec.size, "mean": list(spec.mean), "std": list(spec.std),
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(SSL))
def test_specs_are_torchaudios(name: str) -> None:
    import torchaudio.pipelines as pipelines

    tag = SSL[name]
    assert list(BACKBONES.get(name).weights) == [tag] and BACKBONES.get(name).input == "waveform"
    spec = weights_spec(name, tag)
    bundle = getattr(pipelines, tag)
    assert spec.published() is bundle and spec.file_name == bundle._path
    assert spec.url == f"https://download.pytorch.org/torchaudio/models/{bundle._path}"
    assert spec.preprocessing() == {"sample_rate": bundle.sample_rate} == {"sample_rate": 16000}
    assert "learned layer-weighted sum" in BACKBONES.get(name).description


@pytest.mark.parametrize("name", VIDEO)
def test_kinetics400_loads_every_key(name: str, torch_home: Path) -> None:
    torch.manual_seed(0)
    file_state = getattr(tv_video, name)(weights=None).state_dict()  # torchvision's own keys
    path = _save(file_state, name, "kinetics400")
    assert path.name == re.sub(r".*/", "", weights_spec(name, "kinetics400").url)
    model = create_backbone(name, num_classes=400)
    loaded = load_pretrained(model, "kinetics400", backbone=name)
    assert loaded.path == path and loaded.fresh == ()  # the 400-class head is kept too
    _assert_loaded(model, file_state)
    other = create_backbone(name, num_classes=7)
    loaded = load_pretrained(other, "kinetics400", backbone=name)
    assert loaded.fresh == ("fc.bias", "fc.weight")  # a head of another size starts fresh
    assert other.fc.weight.shape == (7, other.num_features)
    _assert_loaded(other, file_state, head=False)


@pytest.mark.parametrize(
    "name, shape",
    [("r3d_18", (1, 3, 4, 32, 32)), ("swin3d_t", (1, 3, 4, 32, 32)), ("s3d", (1, 3, 16, 224, 224))],
)
def test_same_logits_as_torchvision(name: str, shape: tuple[int, ...], torch_home: Path) -> None:
    """The loaded model computes what torchvision's does, its 400-class head included (S3D's
    1x1x1 convolution head as a linear layer)."""
    torch.manual_seed(0)
    reference = getattr(tv_video, name)(weights=None).eval()
    _save(reference.state_dict(), name, "kinetics400")
    model = create_backbone(name, num_classes=400).eval()
    load_pretrained(model, "kinetics400", backbone=name)
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_mvit_same_logits_as_torchvision(torch_home: Path) -> None:
    torch.manual_seed(0)
    reference = tv_video.mvit_v2_s(weights=None).eval()
    _save(reference.state_dict(), "mvit_v2_s", "kinetics400")
    model = create_backbone("mvit_v2_s", num_classes=400).eval()
    load_pretrained(model, "kinetics400", backbone="mvit_v2_s")
    x = torch.randn(1, 3, 16, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)


def test_mvit_refuses_another_clip_shape() -> None:
    model = create_backbone("mvit_v1_b", num_classes=3)
    with pytest.raises(UserInputError, match=r"exactly 16 frames of 224x224.*\(8, 112, 112\)"):
        model(torch.randn(1, 3, 8, 112, 112))


def _ssl_case(name: str, torch_home: Path) -> None:
    import torchaudio.pipelines as pipelines
    from torchaudio.pipelines._wav2vec2.utils import _get_model  # what bundle.get_model builds

    tag = SSL[name]
    bundle = getattr(pipelines, tag)
    torch.manual_seed(0)
    reference = _get_model(bundle._model_type, bundle._params).eval()
    file_state = reference.state_dict()
    _save(file_state, name, tag)
    model = create_backbone(name, num_classes=3).eval()
    loaded = load_pretrained(model, tag, backbone=name)
    assert loaded.fresh == ("fc.bias", "fc.weight", "layer_logits")
    _assert_loaded(model, file_state)
    assert set(model.state_dict()) == {f"model.{k}" for k in file_state} | set(loaded.fresh)
    # features: the learned layer mix (uniform at the start) of every layer, averaged over time
    wave = torch.randn(1, 4000)
    with torch.no_grad():
        layers, _ = reference.extract_features(wave)
        expected = torch.stack(layers).mean(0).mean(1)
        torch.testing.assert_close(model.forward_features(wave), expected, rtol=1e-4, atol=1e-5)
    assert len(layers) == model.num_layers == 12


@pytest.mark.parametrize("name", ["hubert_base", "wavlm_base"])  # one per torchaudio model type
def test_ssl_bundle_weights_load_every_key(name: str, torch_home: Path) -> None:
    _ssl_case(name, torch_home)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wav2vec2_base", "wavlm_base_plus"])
def test_ssl_bundle_weights_load_every_key_slow(name: str, torch_home: Path) -> None:
    _ssl_case(name, torch_home)


@pytest.fixture(scope="module")
def r3d_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return tv_video.r3d_18(weights=None).state_dict()


def test_missing_and_misshapen_keys_are_one_line(torch_home: Path, r3d_state) -> None:
    model = create_backbone("r3d_18", num_classes=400)
    before = model.state_dict()["stem.0.weight"].clone()
    missing = {k: v for k, v in r3d_state.items() if k != "layer2.0.conv1.0.weight"}
    _save(missing, "r3d_18", "kinetics400")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(model, "kinetics400", backbone="r3d_18")
    message = str(err.value)
    assert "missing layer2.0.conv1.0.weight" in message and "r3d_18-b3b3357e.pth" in message
    assert "\n" not in message
    misshapen = dict(r3d_state, **{"layer1.0.conv1.1.weight": torch.ones(63)})
    _save(misshapen, "r3d_18", "kinetics400")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(model, "kinetics400", backbone="r3d_18")
    assert "wrong shape layer1.0.conv1.1.weight (63,) in the file, (64,) in the model" in str(
        err.value
    ) and "\n" not in str(err.value)
    extra = dict(r3d_state, **{"extra.weight": torch.ones(1)})
    _save(extra, "r3d_18", "kinetics400")
    with pytest.raises(CheckpointError, match=r"unexpected extra\.weight"):
        load_pretrained(model, "kinetics400", backbone="r3d_18")
    assert torch.equal(model.state_dict()["stem.0.weight"], before)  # nothing half-loaded


def test_absent_file_offline_names_file_folder_and_url(torch_home: Path) -> None:
    model = create_backbone("mc3_18", num_classes=3)
    with pytest.raises(UserInputError) as err:
        load_pretrained(model, "kinetics400", backbone="mc3_18")
    message = str(err.value)
    assert "\n" not in message
    assert "mc3_18-a90a0ba3.pth" in message and str(torch_home) in message
    assert "https://download.pytorch.org/models/mc3_18-a90a0ba3.pth" in message
    assert "Temporary failure in name resolution" in message
    with pytest.raises(UserInputError, match=r"hubert_fairseq_base_ls960\.pth is not in"):
        resolve_weights("hubert_base", "HUBERT_BASE", download=False)
    assert not torch_home.exists() or not any(torch_home.iterdir())


def test_absent_file_online_is_downloaded_into_the_cache(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch, r3d_state
) -> None:
    calls = []

    def download(url: str, dst: str, hash_prefix: str | None = None, **kwargs: object) -> None:
        calls.append((url, Path(dst), hash_prefix))
        torch.save(r3d_state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    model = create_backbone("r3d_18", num_classes=400)
    loaded = load_pretrained(model, "kinetics400", backbone="r3d_18")
    url = "https://download.pytorch.org/models/r3d_18-b3b3357e.pth"
    assert calls == [(url, torch_home / "r3d_18-b3b3357e.pth", "b3b3357e")]
    assert loaded.path == torch_home / "r3d_18-b3b3357e.pth" and loaded.path.is_file()
    _assert_loaded(model, r3d_state)
    load_pretrained(model, "kinetics400", backbone="r3d_18")  # now cached: no second download
    assert len(calls) == 1


def test_unknown_tags_list_the_known_ones(torch_home: Path) -> None:
    model = create_backbone("r3d_18", num_classes=3)
    with pytest.raises(UserInputError) as err:
        load_pretrained(model, "kinetics", backbone="r3d_18")
    assert str(err.value) == (
        "backbone 'r3d_18' has no pretrained weights 'kinetics'. Did you mean 'kinetics400'? "
        "Known tags: kinetics400"
    )
    with pytest.raises(UserInputError, match="'video_r3d_test' has no pretrained weights tags"):
        load_pretrained(
            create_backbone("video_r3d_test", num_classes=3), "x", backbone="video_r3d_test"
        )
    with pytest.raises(UserInputError, match="Did you mean 'HUBERT_BASE'"):
        resolve_weights("hubert_base", "hubert_base")


def test_a_local_file_needs_no_tag(tmp_path: Path, r3d_state) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in r3d_state.items()}, str(path))
    model = create_backbone("r3d_18", num_classes=5)
    assert load_pretrained(model, path, backbone="r3d_18").fresh == ("fc.bias", "fc.weight")
    assert load_pretrained(model, str(path)).path == path  # no backbone: a path
    _assert_loaded(model, r3d_state, head=False)
    with pytest.raises(UserInputError, match="no such file"):
        load_pretrained(model, tmp_path / "none.pth", backbone="r3d_18")
