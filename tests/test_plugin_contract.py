"""Every registered plugin keeps the contract (mmkit/backbones/base.py, docs/design.md "Plugins"):
parametrised over the registry's own listing, so a new plugin is checked the moment it registers.
The per-modality test files keep only what is particular to their modality."""

from __future__ import annotations

import inspect
import json
import math
from typing import Any

import pytest
import torch

from mmkit.backbones.base import Backbone
from mmkit.backbones.clip_base import ClipModel
from mmkit.errors import UserInputError
from mmkit.losses import ContrastiveLoss
from mmkit.registry import (
    BACKBONES,
    MODALITIES,
    PREPROCESSORS,
    REGISTRIES,
    PluginSpec,
    create_backbone,
    create_preprocessor,
)
from tests.test_mm_blocks import TINY_OPEN_CLIP

# what mmkit ships: a plugin that stops registering would otherwise just drop out of the listing
BUILTINS = {
    "backbone": {
        "audio_cnn", "audio_cnn_test", "audio_resnet",
        "video_r3d", "video_r3d_test", "video_vit", "video_vit_test",
        "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t",
        "wav2vec2_base", "hubert_base", "wavlm_base", "wavlm_base_plus", "ssl_speech_test",
        "image_resnet", "image_vit", "image_vit_test", "text_transformer",
        "text_transformer_test", "clip_lite", "clip_lite_test", "open_clip_model",
    },
    "preprocessor": {
        "log_mel", "spec_augment", "wave_augment", "band_limit", "noise_mix", "random_gain",
        "random_trim", "time_shift", "room_reverb", "phone_channel", "speed_perturb",
        "uniform", "random_clip", "multi_clip", "video_transform",
        "image_transform", "clip_tokenizer",
    },
}  # fmt: skip
# open_clip's default ViT-B-32 is 150M parameters: the same code path, built small
SMALL = {"open_clip_model": {"model_name": "ViT-S-32", "model_kwargs": TINY_OPEN_CLIP}}
# S3D's pools need clips of at least 8 x 32 x 32; the MViTs take 16 x 224 x 224 only (20 s each)
MIN_CLIP = {"s3d": (8, 32)}
FIXED_224 = {"mvit_v1_b", "mvit_v2_s"}


def _plugins() -> list[Any]:
    """Every backbone and preprocessor (layouts: ``read(path, options)``, tests/test_layouts.py)."""
    return [
        pytest.param(kind, name, id=f"{kind}:{name}")
        for kind in BUILTINS
        for name in REGISTRIES[kind].names()
    ]


def _defaults(factory: Any) -> dict[str, Any]:
    params = inspect.signature(factory).parameters.values()
    return {p.name: p.default for p in params if p.default is not p.empty}


def _plain(value: Any) -> bool:
    """JSON plain data that survives a round trip (tuples become lists, which factories take)."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _inputs(spec: PluginSpec, model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """A batch of two, as the preprocess stages would make it, as small as the model takes."""
    torch.manual_seed(1)
    modality = spec.modality
    if spec.input == "waveform":
        return (torch.randn(2, 8000),)  # half a second at 16 kHz
    if modality == "audio":
        return (torch.randn(2, 1, 32, 41),)  # log-mel [B, 1, n_mels, frames]
    if modality == "video":  # MViT takes one clip shape only (num_frames, size)
        size = getattr(model, "grid", 0) * getattr(model, "patch_size", 0) or 16
        frames, size = MIN_CLIP.get(spec.name, (getattr(model, "num_frames", 4), size))
        size = getattr(model, "size", size)
        return (torch.randn(2, 3, frames, size, size),)
    images = torch.randn(2, 3, getattr(model, "image_size", 0), getattr(model, "image_size", 0))
    tokens = torch.randint(1, 1000, (2, getattr(model, "context_length", 0)))
    return {"image": (images,), "text": (tokens,)}.get(modality, (images, tokens))


def test_the_builtins_are_registered() -> None:
    for kind, names in BUILTINS.items():
        assert names <= set(REGISTRIES[kind].names()), names - set(REGISTRIES[kind].names())


@pytest.mark.parametrize(("kind", "name"), _plugins())
def test_factory_options_are_keyword_only_plain_data(kind: str, name: str) -> None:
    """``factory(*, num_classes, **options)``: no positional parameters, defaults a checkpoint's
    config.json can hold, and ``loads`` naming real arguments."""
    spec = REGISTRIES[kind].get(name)
    assert spec.description and spec.modality in MODALITIES
    params = inspect.signature(spec.factory).parameters
    positional = [n for n, p in params.items() if p.kind not in (p.KEYWORD_ONLY, p.VAR_KEYWORD)]
    assert not positional, f"{name}: {positional} must be keyword-only"
    if kind == "backbone":
        assert "num_classes" in params
    else:  # the registry builds a preprocessor from its params alone
        assert all(p.default is not p.empty for p in params.values() if p.kind is p.KEYWORD_ONLY)
    bad = {k: v for k, v in _defaults(spec.factory).items() if not _plain(v)}
    assert not bad, f"{name}: defaults that are not plain JSON data: {bad}"
    assert set(spec.loads) <= set(params), spec.loads


@pytest.mark.parametrize("name", REGISTRIES["layout"].names())
def test_every_layout_reads_a_root(name: str) -> None:
    """``read(root, options)`` and ``detect(root, options)``: the two calls records.py makes."""
    spec = REGISTRIES["layout"].get(name)
    assert spec.description and (spec.modality in MODALITIES or spec.modality == "any")
    assert callable(spec.detect), f"{name}: a layout needs detect="
    for fn in (spec.factory, spec.detect):
        params = list(inspect.signature(fn).parameters.values())
        assert [p.kind for p in params[:2]] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2, fn
        assert all(p.default is not p.empty for p in params[2:]), (name, fn)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in FIXED_224 else n for n in BACKBONES.names()],
)
def test_every_backbone_keeps_the_contract(name: str) -> None:
    """Built from its JSON-recorded options (as from a checkpoint), seeded builds are identical;
    ``forward_features`` gives ``[B, num_features]``, ``model(x) == forward_head(features)``,
    and one backward step reaches every parameter and the input; a classification backbone's
    ``pretrained_fresh`` names its head, the parameters ``forward_head`` trains."""
    spec = BACKBONES.get(name)
    num_classes = 0 if spec.modality == "mm" else 3
    options = {**_defaults(spec.factory), **SMALL.get(name, {})}
    options.pop("num_classes", None)
    torch.manual_seed(0)
    model = create_backbone(name, num_classes=num_classes, **SMALL.get(name, {}))
    torch.manual_seed(0)
    again = create_backbone(name, num_classes=num_classes, **json.loads(json.dumps(options)))
    ours, theirs = model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

    assert isinstance(model, Backbone) and isinstance(model, torch.nn.Module)
    assert isinstance(model.num_features, int) and model.num_features > 0
    inputs = _inputs(spec, model)
    with torch.no_grad():
        model.eval()
        features = model.forward_features(inputs[0])
        assert features.shape == (2, model.num_features) and torch.isfinite(features).all()
        torch.testing.assert_close(model.forward_features(inputs[0]), features)  # deterministic
        logits = model.forward_head(features)
        assert logits.shape == (2, num_classes or model.num_features) and logits.std() > 0
        if spec.modality != "mm":
            torch.testing.assert_close(model(*inputs), logits)

    model.train()
    if inputs[0].is_floating_point():
        inputs[0].requires_grad_()
    if spec.modality == "mm":
        assert isinstance(model, ClipModel)
        images, texts, scale = model(*inputs)
        assert images.shape == texts.shape == (2, model.num_features)
        torch.testing.assert_close(images.norm(dim=-1), torch.ones(2))
        torch.testing.assert_close(texts.norm(dim=-1), torch.ones(2))
        assert 0 < scale.item() <= model.max_logit_scale + 1e-4
        loss = ContrastiveLoss()(images, texts, scale)
        for stage, params in model.preprocessors().values():  # registered, and take its params
            create_preprocessor(stage, **params)
    else:
        out = model(*inputs)
        assert out.shape == (2, num_classes)
        loss = out.float().square().mean()
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    assert params and not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for _, p in params)
    if inputs[0].is_floating_point():
        assert torch.isfinite(inputs[0].grad).all() and inputs[0].grad.abs().sum() > 0
    if spec.modality in ("audio", "video"):  # it names its head: what forward_head trains
        head = tuple(model.pretrained_fresh)
        in_head = {n for n, _ in params if n.startswith(head)}
        assert in_head and len(in_head) < len(params), (head, in_head)
        model.zero_grad(set_to_none=True)
        model.forward_head(features).square().mean().backward()
        reached = {n for n, p in params if p.grad is not None and p.grad.abs().sum() > 0}
        assert reached and reached <= in_head, reached - in_head


@pytest.mark.parametrize("name", BACKBONES.names())
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


@pytest.mark.parametrize("name", PREPROCESSORS.names())
def test_every_preprocessor_rebuilds_from_its_params(name: str) -> None:
    module = create_preprocessor(name)
    params = module.params()
    assert json.loads(json.dumps(params)) == params  # JSON plain data
    rebuilt = create_preprocessor(name, **params)
    assert rebuilt.params() == params and repr(rebuilt) == repr(module)
    if isinstance(module, torch.nn.Module):
        state, again = module.state_dict(), rebuilt.state_dict()
        assert state.keys() == again.keys()
        assert all(torch.equal(state[k], again[k]) for k in state)
