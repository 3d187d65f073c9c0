"""Every registered plugin keeps the contract (mmkit/backbones/base.py): parametrised over the
registry itself, so a new plugin is checked the moment it registers."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from mmkit.backbones.base import Backbone
from mmkit.errors import UserInputError
from mmkit.registry import BACKBONES, PREPROCESSORS, create_backbone, create_preprocessor

# plugins whose defaults build something too large (or network-bound) to build here at the defaults
HEAVY = {"open_clip_model", "r3d_18", "mc3_18", "r2plus1d_18", "clip_lite", "image_vit",
         "image_resnet", "text_transformer", "mvit_v1_b", "mvit_v2_s", "wav2vec2_base",
         "hubert_base", "wavlm_base", "wavlm_base_plus"}  # fmt: skip


def _example_input(name: str, model: torch.nn.Module) -> torch.Tensor:
    modality = BACKBONES.get(name).modality
    if BACKBONES.get(name).input == "waveform":
        return torch.randn(2, 8000)
    if modality == "audio":
        return torch.randn(2, 1, 32, 41)
    if modality == "video":
        size = getattr(model, "grid", 0) * getattr(model, "patch_size", 0) or 32
        frames = getattr(model, "num_frames", 8)
        return torch.randn(2, 3, frames, size, size)
    if modality == "image":
        return torch.randn(2, 3, model.image_size, model.image_size)
    return torch.randint(0, 1000, (2, model.context_length))


@pytest.mark.parametrize("name", sorted(set(BACKBONES.names()) - HEAVY - {"clip_lite_test"}))
def test_every_backbone_keeps_the_contract(name: str) -> None:
    spec = BACKBONES.get(name)
    assert spec.description and spec.modality in ("audio", "video", "image", "text")
    num_classes = 3 if spec.modality in ("audio", "video") else 0
    torch.manual_seed(0)
    model = create_backbone(name, num_classes=num_classes)
    assert isinstance(model, Backbone) and isinstance(model, torch.nn.Module)
    assert isinstance(model.num_features, int) and model.num_features > 0
    x = _example_input(name, model)
    with torch.no_grad():
        model.eval()
        features = model.forward_features(x)
        assert features.shape == (2, model.num_features)
        torch.testing.assert_close(model(x), model.forward_head(features))
    out = model.train()(x)
    assert out.shape == (2, num_classes or model.num_features)
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    for param in inspect.signature(spec.factory).parameters.values():
        if param.default is not inspect.Parameter.empty:  # defaults are JSON plain data
            json.dumps(param.default)


@pytest.mark.parametrize("name", sorted(BACKBONES.names()))
def test_unknown_arguments_are_one_line(name: str) -> None:
    with pytest.raises(UserInputError, match="unexpected keyword argument 'widthz'") as err:
        create_backbone(name, num_classes=0, widthz=3)
    assert "\n" not in str(err.value)


def test_a_bug_inside_a_factory_keeps_its_type() -> None:
    from mmkit.registry import register_backbone

    @register_backbone("buggy_for_test", modality="audio")
    def buggy(*, num_classes: int) -> torch.nn.Module:
        """A factory with a bug."""
        return len(num_classes)  # TypeError: a bug, not a user error

    try:
        with pytest.raises(TypeError):
            create_backbone("buggy_for_test", num_classes=3)
    finally:
        BACKBONES.unregister("buggy_for_test")


@pytest.mark.parametrize("name", sorted(PREPROCESSORS.names()))
def test_every_preprocessor_rebuilds_from_its_params(name: str) -> None:
    spec = PREPROCESSORS.get(name)
    assert spec.description
    module = create_preprocessor(name)
    params = module.params()
    assert json.loads(json.dumps(params)) == params  # JSON plain data
    rebuilt = create_preprocessor(name, **params)
    assert rebuilt.params() == params and repr(rebuilt) == repr(module)
    if isinstance(module, torch.nn.Module):
        state, again = module.state_dict(), rebuilt.state_dict()
        assert state.keys() == again.keys()
        assert all(torch.equal(state[k], again[k]) for k in state)


def test_every_plugin_factory_has_only_keyword_arguments() -> None:
    for spec in [*BACKBONES, *PREPROCESSORS]:
        for param in inspect.signature(spec.factory).parameters.values():
            assert param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD), (
                spec.name,
                param.name,
            )
            if isinstance(param.default, float):
                assert math.isfinite(param.default)
