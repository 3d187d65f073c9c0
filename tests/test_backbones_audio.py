"""Audio backbones beyond the contract every backbone keeps (tests/test_plugin_contract.py):
any input size, weights through safetensors, budgets, options and their errors."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from safetensors.torch import load_model, save_model

from mmkit.errors import UserInputError
from mmkit.registry import BACKBONES, create_backbone

# the log-mel backbones; the waveform ones (ssl_speech) keep the contract in test_plugin_contract
AUDIO_BACKBONES = [s.name for s in BACKBONES.specs("audio") if s.input == "log_mel"]
# Parameter budgets (with a 12-class head): (min, max).
BUDGETS = {
    "audio_cnn": (50_000, 300_000),
    "audio_resnet": (300_000, 1_000_000),
    "audio_cnn_test": (1_000, 20_000),
}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", AUDIO_BACKBONES)
@pytest.mark.parametrize("shape", [(40, 51), (64, 7), (128, 301), (5, 3)])
def test_any_input_size(name, shape):
    model = create_backbone(name, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, *shape)).shape == (2, 3)


@pytest.mark.parametrize("name", AUDIO_BACKBONES)
def test_weights_round_trip_through_safetensors(name, tmp_path):
    torch.manual_seed(0)
    model = create_backbone(name, num_classes=4).eval()
    save_model(model, str(tmp_path / "m.safetensors"))
    torch.manual_seed(1)
    rebuilt = create_backbone(name, num_classes=4).eval()
    load_model(rebuilt, str(tmp_path / "m.safetensors"), strict=True)
    x = torch.randn(2, 1, 64, 50)
    torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("name", [n for n in AUDIO_BACKBONES if n in BUDGETS])
def test_parameter_budget(name):
    low, high = BUDGETS[name]
    assert low <= _params(create_backbone(name, num_classes=12)) <= high


@pytest.mark.parametrize("name", AUDIO_BACKBONES)
def test_kwargs_rebuild_and_options(name):
    factory = BACKBONES.get(name).factory
    defaults = {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.default is not p.empty
    }
    # checkpoints record backbone kwargs as JSON and rebuild from them
    rebuilt = create_backbone(name, num_classes=5, **json.loads(json.dumps(defaults)))
    reference = create_backbone(name, num_classes=5)
    assert repr(rebuilt) == repr(reference) and _params(rebuilt) == _params(reference)
    model = create_backbone(name, num_classes=5, in_channels=2, activation="silu", dropout=0.1)
    assert model(torch.randn(2, 2, 32, 40)).shape == (2, 5)
    headless = create_backbone(name, num_classes=0)
    x = torch.randn(2, 1, 32, 40)
    assert headless.eval()(x).shape == (2, headless.num_features)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_classes": -1}, r"num_classes \(-1\) must be >= 0"),
        ({"num_classes": 3, "activation": "tanh"}, "activation must be one of relu, silu, gelu"),
        ({"num_classes": 3, "dropout": 1.5}, r"dropout \(1.5\) must be in \[0, 1\)"),
        ({"num_classes": 3, "widths": []}, "widths"),
        ({"num_clases": 3}, "unexpected keyword argument 'num_clases'"),
    ],
)
@pytest.mark.parametrize("name", ["audio_cnn", "audio_resnet"])
def test_bad_arguments_are_user_errors(name, kwargs, message):
    with pytest.raises(UserInputError, match=message):
        create_backbone(name, **kwargs)


def test_a_tiny_backbone_learns_log_mel_speech(speech_set):
    """End-to-end sanity: log-mel + audio_cnn_test separates two spoken words in a few steps."""
    from mmkit.io.audio import load_audio, pad_or_crop
    from mmkit.preprocess.audio import LogMel

    items = [i for i in speech_set.items if i.word in ("yes", "no")]
    waves = torch.stack([pad_or_crop(load_audio(i.path, 16000), 16000) for i in items])
    labels = torch.tensor([int(i.word == "yes") for i in items])
    torch.manual_seed(0)
    features = LogMel()(waves)
    model = create_backbone("audio_cnn_test", num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        loss.backward()
        optimizer.step()
    accuracy = (model.eval()(features).argmax(-1) == labels).float().mean()
    assert accuracy > 0.9
