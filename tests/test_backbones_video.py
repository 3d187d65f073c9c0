"""Video backbones beyond the contract every backbone keeps (tests/test_plugin_contract.py):
other clip sizes, argument errors, pooling, local weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import video as tv_video

from mmkit import create_backbone
from mmkit.backbones.pretrained import load_pretrained
from mmkit.errors import CheckpointError, UserInputError


@pytest.mark.parametrize("name", ["video_r3d_test", "video_vit_test"])
def test_no_classifier_and_other_clip_sizes(name: str) -> None:
    model = create_backbone(name, num_classes=0).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 5, 40, 24))  # other T and a non-square frame
    assert out.shape == (1, model.num_features)


def test_bad_arguments() -> None:
    with pytest.raises(UserInputError, match="num_classes"):
        create_backbone("video_r3d_test", num_classes=-1)
    with pytest.raises(UserInputError, match="widths and depths"):
        create_backbone("video_r3d", num_classes=2, widths=[8, 16], depths=[1])
    with pytest.raises(UserInputError, match="multiple of patch_size"):
        create_backbone("video_vit_test", num_classes=2, img_size=30)
    with pytest.raises(UserInputError, match="unexpected keyword"):
        create_backbone("r3d_18", num_classes=2, pretrained=True)


def test_r3d_pool_avg_and_avgmax() -> None:
    torch.manual_seed(0)
    avgmax = create_backbone("video_r3d_test", num_classes=3).eval()
    avg = create_backbone("video_r3d_test", num_classes=3, pool="avg").eval()
    avg.load_state_dict(avgmax.state_dict())
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        maps = avgmax.stages(avgmax.stem(x)).flatten(2)
        torch.testing.assert_close(avg.forward_features(x), maps.mean(-1))
        torch.testing.assert_close(avgmax.forward_features(x), maps.mean(-1) + maps.amax(-1))
    with pytest.raises(UserInputError, match=r"pool \('max'\) must be one of avg, avgmax"):
        create_backbone("video_r3d_test", num_classes=3, pool="max")


@pytest.fixture(scope="module")
def mc3_kinetics_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    """A torchvision mc3_18 state dict (400 classes) saved as .pth and .safetensors."""
    torch.manual_seed(1)
    state = tv_video.mc3_18(num_classes=400).state_dict()
    root = tmp_path_factory.mktemp("weights")
    torch.save(state, root / "mc3_18.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "mc3_18.safetensors"))
    return state, root / "mc3_18.pth", root / "mc3_18.safetensors"


def test_load_weights_replaces_a_head_of_another_size(mc3_kinetics_like) -> None:
    state, pth, _ = mc3_kinetics_like
    model = create_backbone("mc3_18", num_classes=5)
    assert load_pretrained(model, pth).fresh == ("fc.bias", "fc.weight")
    own = model.state_dict()
    assert torch.equal(own["stem.0.weight"], state["stem.0.weight"])
    last_bn = [k for k in state if k.endswith("running_var")][-1]
    assert torch.equal(own[last_bn], state[last_bn])
    assert own["fc.weight"].shape == (5, 512)
    reference = tv_video.mc3_18(num_classes=400).eval()
    reference.load_state_dict(state)
    x = torch.randn(1, 3, 2, 16, 16)
    with torch.no_grad():
        reference.fc = torch.nn.Identity()
        torch.testing.assert_close(model.eval().forward_features(x), reference(x))


def test_load_weights_keeps_a_matching_head(mc3_kinetics_like) -> None:
    state, _, safetensors_path = mc3_kinetics_like
    model = create_backbone("mc3_18", num_classes=400)
    load_pretrained(model, safetensors_path, backbone="mc3_18")
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


def test_bad_weight_files(tmp_path: Path, mc3_kinetics_like) -> None:
    _, pth, _ = mc3_kinetics_like
    mc3 = create_backbone("mc3_18", num_classes=3)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_pretrained(create_backbone("r3d_18", num_classes=3), pth)  # other architecture
    with pytest.raises(UserInputError, match="no such file"):
        load_pretrained(mc3, tmp_path / "none.pth")
    pickled = tmp_path / "object.pth"
    torch.save({"weights": object()}, pickled)  # needs unpickling of arbitrary objects
    with pytest.raises(CheckpointError, match="refused, it holds Python objects"):
        load_pretrained(mc3, pickled)
    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, nested)
    with pytest.raises(CheckpointError, match=r"missing .*; unexpected foo\)"):
        load_pretrained(mc3, nested)
