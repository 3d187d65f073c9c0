"""mmkit.config: defaults < config file < --set < flags, name/type checks, validation messages."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mmkit.config import TrainConfig, build_config, from_dict, read_config_file
from mmkit.configs import AudioConfig, MMConfig, VideoConfig
from mmkit.errors import UserInputError


@dataclass
class _SubConfig(TrainConfig):
    """A modality-style subclass: extra typed keys on top of TrainConfig."""

    snr: tuple[float, float] = (0.0, 25.0)
    column: str | None = None
    n_mels: int = 64
    aug: dict = field(default_factory=dict)


def _yaml(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_when_nothing_given():
    cfg = build_config(TrainConfig, None, {"dataset": "data/"})
    assert cfg == TrainConfig(dataset="data/")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.device) == (20, 32, 3e-3, "auto")


def test_precedence_defaults_file_flags(tmp_path):
    path = _yaml(
        tmp_path,
        "dataset: from_file\nepochs: 5\nbatch-size: 8\nlr: 0.1\nseed: 3\n"
        "backbone_kwargs: {width: 16}\n",
    )
    cfg = build_config(
        TrainConfig,
        path,
        {"epochs": 7, "lr": None, "batch_size": None, "device": "cpu", "dataset": None},
    )
    assert cfg.epochs == 7  # flag beats file
    assert cfg.lr == 0.1  # None flag = not given: the file shows through
    assert cfg.batch_size == 8  # dashed key in the file maps to the field
    assert cfg.dataset == "from_file"
    assert cfg.device == "cpu"  # flag beats default
    assert cfg.seed == 3
    assert cfg.backbone_kwargs == {"width": 16}
    assert cfg.weight_decay == TrainConfig.weight_decay  # default when neither gives it


def test_false_and_zero_flags_are_given_not_missing(tmp_path):
    path = _yaml(tmp_path, "dataset: d\namp: true\nseed: 4\n")
    cfg = build_config(TrainConfig, path, {"amp": False, "seed": 0})
    assert cfg.amp is False
    assert cfg.seed == 0


def test_json_config_file(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"dataset": "d", "epochs": 3, "warmup": 0, "prepared": None}))
    cfg = build_config(TrainConfig, path, {})
    assert (cfg.dataset, cfg.epochs, cfg.prepared) == ("d", 3, None)
    assert isinstance(cfg.warmup, float) and cfg.warmup == 0.0  # int accepted for a float


def test_empty_yaml_is_defaults(tmp_path):
    assert read_config_file(_yaml(tmp_path, "# nothing\n")) == {}
    cfg = build_config(TrainConfig, _yaml(tmp_path, ""), {"dataset": "d"})
    assert cfg.epochs == 20


def test_unknown_key_names_it_and_suggests(tmp_path):
    path = _yaml(tmp_path, "dataset: d\nepoch: 3\n")
    with pytest.raises(UserInputError) as info:
        build_config(TrainConfig, path, {})
    msg = str(info.value)
    assert "'epoch'" in msg
    assert "did you mean 'epochs'?" in msg
    assert str(path) in msg  # says which file


def test_unknown_override_key_without_close_match():
    with pytest.raises(UserInputError) as info:
        build_config(TrainConfig, None, {"dataset": "d", "zzzzzz": 1})
    assert "'zzzzzz'" in str(info.value)
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("epochs", "ten", "epochs must be int, got 'ten'"),
        ("epochs", 2.5, "epochs must be int, got 2.5"),
        ("epochs", True, "epochs must be int, got True"),
        ("lr", "fast", "lr must be float, got 'fast'"),
        ("amp", "yes", "amp must be bool, got 'yes'"),
        ("backbone_kwargs", [1, 2], "backbone_kwargs must be dict, got [1, 2]"),
        ("device", None, "device must be str, got None"),
        ("device", ["cpu"], "device must be str"),
    ],
)
def test_wrong_type_names_key_and_value(key, value, expected):
    with pytest.raises(UserInputError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        from_dict(TrainConfig, {"dataset": "d", key: value})


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "0.001", "1.0e-3"])
def test_exponent_floats_from_set_and_yaml(tmp_path, text):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a float option still takes it."""
    assert build_config(TrainConfig, None, {"dataset": "d"}, [f"lr={text}"]).lr == 0.001
    path = _yaml(tmp_path, f"dataset: d\nlr: {text}\n")
    assert build_config(TrainConfig, path, {}).lr == 0.001


def test_null_in_file_for_non_optional_key_is_a_type_error(tmp_path):
    path = _yaml(tmp_path, "dataset: d\nepochs: null\n")
    with pytest.raises(UserInputError, match="epochs must be int, got None"):
        build_config(TrainConfig, path, {})


def test_subclass_fields_coerced():
    cfg = from_dict(_SubConfig, {"dataset": "d", "snr": [5, 10], "column": "wav", "aug": {"a": 1}})
    assert cfg.snr == (5, 10) and isinstance(cfg.snr, tuple)
    assert cfg.column == "wav"
    cfg = from_dict(_SubConfig, {"dataset": "d", "column": None})
    assert cfg.column is None
    with pytest.raises(UserInputError, match="snr must be tuple"):
        from_dict(_SubConfig, {"dataset": "d", "snr": 3})
    with pytest.raises(UserInputError, match="did you mean 'n_mels'"):
        from_dict(_SubConfig, {"dataset": "d", "n_mel": 3})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"dataset": ""}, "--dataset is required"),
        ({"epochs": 0}, "--epochs must be >= 1, got 0"),
        ({"batch_size": -2}, "--batch-size must be >= 1, got -2"),
        ({"lr": 0.0}, "--lr must be > 0, got 0.0"),
        ({"device": "tpu"}, "--device must be auto, cpu or cuda, got 'tpu'"),
        ({"warmup": 1.0}, r"warmup must be a fraction in \[0, 1\), got 1.0"),
        ({"warmup": -0.1}, "warmup must be a fraction"),
    ],
)
def test_validation_names_bad_value(overrides, expected):
    values = {"dataset": "d", **overrides}
    with pytest.raises(UserInputError, match=expected):
        build_config(TrainConfig, None, values)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_valid_devices(device):
    assert build_config(TrainConfig, None, {"dataset": "d", "device": device}).device == device


def test_validation_applies_to_file_values(tmp_path):
    path = _yaml(tmp_path, "dataset: d\nepochs: 0\n")
    with pytest.raises(UserInputError, match="--epochs must be >= 1, got 0"):
        build_config(TrainConfig, path, {})
    # ... and a flag can fix a bad file value
    assert build_config(TrainConfig, path, {"epochs": 2}).epochs == 2


def test_config_file_errors(tmp_path):
    with pytest.raises(UserInputError, match="config file not found"):
        build_config(TrainConfig, tmp_path / "missing.yaml", {"dataset": "d"})
    with pytest.raises(UserInputError, match="not valid YAML/JSON"):
        read_config_file(_yaml(tmp_path, "epochs: [1, 2\n"))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{epochs: 1}")
    with pytest.raises(UserInputError, match="not valid YAML/JSON"):
        read_config_file(bad_json)
    with pytest.raises(UserInputError, match="expected a mapping"):
        read_config_file(_yaml(tmp_path, "- epochs\n- 3\n"))


def test_to_dict_round_trips():
    cfg = build_config(
        TrainConfig, None, {"dataset": "d", "epochs": 3, "backbone_kwargs": {"w": 2}}
    )
    again = from_dict(TrainConfig, json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


# -- --set key=value ---------------------------------------------------------------------------
def test_set_values_are_yaml_and_typed():
    sets = ["epochs=4", "lr=0.5", "amp=false", "noise_snr=[5, 20]", "f_max=null", "classes=12"]
    cfg = build_config(AudioConfig, None, {"dataset": "d"}, sets)
    assert (cfg.epochs, cfg.lr, cfg.amp) == (4, 0.5, False)
    assert cfg.noise_snr == (5.0, 20.0) and isinstance(cfg.noise_snr, tuple)
    assert cfg.f_max is None
    assert cfg.classes == "12"  # a string field keeps the text as written


def test_set_string_field_takes_text_as_written():
    """YAML would read 'a photo: {}' as a mapping; a string field takes it verbatim."""
    cfg = build_config(MMConfig, None, {"dataset": "d"}, ["prompt=a photo: {}"])
    assert cfg.prompt == "a photo: {}"
    cfg = build_config(MMConfig, None, {"dataset": "d"}, ["prompt=null"])
    assert cfg.prompt is None  # an optional string can still be unset


def test_set_dotted_key_merges_into_the_files_mapping(tmp_path):
    path = _yaml(tmp_path, "dataset: d\nbackbone_kwargs: {width: 16, depth: 3}\n")
    sets = ["backbone_kwargs.width=64", "backbone_kwargs.block.kind=bottleneck"]
    cfg = build_config(TrainConfig, path, {}, sets)
    assert cfg.backbone_kwargs == {"width": 64, "depth": 3, "block": {"kind": "bottleneck"}}
    cfg = build_config(AudioConfig, None, {"dataset": "d"}, ["spec_augment.num_masks=1"])
    assert cfg.spec_augment == {"num_masks": 1}


def test_precedence_file_then_set_then_flags(tmp_path):
    path = _yaml(tmp_path, "dataset: d\nepochs: 5\nlr: 0.1\nseed: 3\n")
    cfg = build_config(TrainConfig, path, {"epochs": 7, "lr": None}, ["epochs=6", "lr=0.2"])
    assert cfg.epochs == 7  # flag > --set
    assert cfg.lr == 0.2  # --set > file (the flag was not given)
    assert cfg.seed == 3  # file > default


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("epoch=3", "--set: unknown key 'epoch' (did you mean 'epochs'?)"),
        ("zzzz=3", "--set: unknown key 'zzzz'"),
        ("epochs", "--set expects key=value, got 'epochs'"),
        ("=3", "--set expects key=value"),
        ("backbone_kwargs.=3", "--set expects key=value"),
        ("epochs.x=1", "--set: epochs is not a mapping, so 'epochs.x' cannot be set"),
        ("epochs=ten", "--set: epochs must be int, got 'ten'"),
        ("noise_snr=[1, 2, 3]", "--set: noise_snr must be 2 finite numbers, got [1, 2, 3]"),
        ("noise_snr=[a, 2]", "--set: noise_snr must be 2 finite numbers"),
    ],
)
def test_set_errors_name_the_key(item, expected):
    with pytest.raises(UserInputError) as info:
        build_config(AudioConfig, None, {"dataset": "d"}, [item])
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_file_key_still_names_the_file_when_set_is_used(tmp_path):
    path = _yaml(tmp_path, "dataset: d\nepochs: ten\n")
    with pytest.raises(UserInputError, match=f"{path}: epochs must be int"):
        build_config(TrainConfig, path, {}, ["lr=0.1"])


# -- the per-modality configs ------------------------------------------------------------------
def test_modality_configs_import_no_torch():
    code = "import sys, mmkit.configs; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


def test_pipelines_use_the_same_config_classes():
    from mmkit.pipelines import audio, mm, video

    assert (audio.AudioConfig, video.VideoConfig, mm.MMConfig) == (
        AudioConfig,
        VideoConfig,
        MMConfig,
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"win_length": 1024}, r"--win-length must be in \[1, --n-fft \(512\)\], got 1024"),
        ({"hop_length": 0}, "--hop-length must be >= 1, got 0"),
        ({"f_min": 4000.0, "f_max": 3000.0}, "got 4000, 3000"),
        ({"sample_rate": 8000, "f_max": 6000.0}, r"f_max <= 4000 Hz \(half the sample rate\)"),
        ({"classes": "10"}, "--classes must be 'all' or '12', got '10'"),
    ],
)
def test_audio_validation(overrides, expected):
    with pytest.raises(UserInputError, match=expected):
        build_config(AudioConfig, None, {"dataset": "d", **overrides})


def test_log_mel_keys_reach_the_preprocessor():
    """hop/window/n_fft/f_min/f_max set in the config shape the log-mel the model is trained
    with, and are what a checkpoint's config.json records for infer to rebuild."""
    import torch

    from mmkit.pipelines.audio import AudioModality
    from mmkit.registry import create_preprocessor

    sets = ["hop_length=320", "win_length=800", "n_fft=1024", "f_min=50", "f_max=7000"]
    cfg = build_config(AudioConfig, None, {"dataset": "d", "augment": False, "n_mels": 40}, sets)
    [(name, log_mel)] = AudioModality().stages(cfg, store=None)
    assert name == "log_mel"
    params = log_mel.params()
    expected = {"hop_length": 320, "win_length": 800, "n_fft": 1024, "f_min": 50.0}
    assert {k: params[k] for k in expected} == expected
    assert (params["f_max"], params["n_mels"]) == (7000.0, 40)
    spec = log_mel(torch.zeros(2, 16000))
    assert spec.shape == (2, 1, 40, 16000 // 320 + 1)  # the hop reached the transform
    rebuilt = create_preprocessor("log_mel", **params)
    wave = torch.randn(2, 16000)
    assert torch.equal(rebuilt(wave), log_mel(wave))


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[1] / "examples").glob("*/*.yaml")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_example_experiment_files_are_valid_configs(path):
    cls = {"audio": AudioConfig, "video": VideoConfig, "mm": MMConfig}[path.parent.name]
    cfg = build_config(cls, path, {"dataset": "d"})
    assert cfg.epochs >= 1


_BOMB = "\n".join(
    [r'a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    + ["backbone_kwargs: {w: *a5}"]
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_BOMB, "expands to more than 100,000 values"),  # 468 bytes that expand to 1e6 values
        ("duration: .inf\n", "duration must be a finite number, got inf"),
        ("lr: .nan\n", "lr must be a finite number, got nan"),
        ("noise_snr: [1, 2, 3]\n", "noise_snr must be 2 finite numbers"),
        ("noise_snr: [1, .inf]\n", r"noise_snr\[1\] must be a finite number"),
        ("backbone_kwargs: {w: .inf}\n", r"backbone_kwargs.w must be a finite number"),
        ("spec_augment: {when: 2024-01-01}\n", "date values are not allowed"),
        ('dataset: "a\\0b"\n', "contains a NUL character"),
    ],
)
def test_bad_yaml_values_are_one_line(tmp_path, text, message):
    path = _yaml(tmp_path, text)
    with pytest.raises(UserInputError, match=message) as err:
        build_config(AudioConfig, path, {"dataset": "x"} if "dataset" not in text else {})
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_binary_garbage_and_huge_files_are_one_line(tmp_path):
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserInputError, match=r"not a UTF-8 text file|not valid YAML"):
        read_config_file(garbage)
    huge = _yaml(tmp_path, "# x\n" * 400_000, name="huge.yaml")
    with pytest.raises(UserInputError, match="larger than 1024 KiB"):
        read_config_file(huge)


def test_nan_flag_is_refused():
    with pytest.raises(UserInputError, match="lr must be a finite number"):
        build_config(AudioConfig, None, {"dataset": "x", "lr": float("nan")})


def test_video_augment_defaults_reach_the_transform_and_augment_false_turns_them_off():
    """The measured defaults (random-resized crop, colour jitter) are what the video transform is
    built with; ``crop_scale=null`` / ``augment: false`` give the plain random crop."""
    from mmkit.pipelines.video import VideoModality

    cfg = build_config(VideoConfig, None, {"dataset": "d"})
    assert (cfg.crop_scale, cfg.color_jitter) == ((0.5, 1.0), 0.2)
    [(name, transform)] = VideoModality().stages(cfg, store=None)
    assert name == "video_transform"
    assert (transform.params()["crop_scale"], transform.params()["color_jitter"]) == (
        [0.5, 1.0],
        0.2,
    )
    sets = ["crop_scale=[0.3, 0.9]", "color_jitter=0.1"]
    [(_, transform)] = VideoModality().stages(
        build_config(VideoConfig, None, {"dataset": "d"}, sets), None
    )
    assert (transform.params()["crop_scale"], transform.params()["color_jitter"]) == (
        [0.3, 0.9],
        0.1,
    )
    for values, given in (({"augment": False}, []), ({}, ["crop_scale=null", "color_jitter=0"])):
        cfg = build_config(VideoConfig, None, {"dataset": "d", **values}, given)
        [(_, transform)] = VideoModality().stages(cfg, store=None)
        assert (transform.params()["crop_scale"], transform.params()["color_jitter"]) == (None, 0.0)


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["crop_scale=[0, 1]"], r"crop_scale must satisfy 0 < min <= max <= 1, got 0.0, 1.0"),
        (["crop_scale=[0.9, 0.5]"], r"crop_scale must satisfy 0 < min <= max <= 1, got 0.9, 0.5"),
        (["color_jitter=1.5"], r"color_jitter must be in \[0, 1\), got 1.5"),
    ],
)
def test_video_augment_validation(sets, expected):
    with pytest.raises(UserInputError, match=expected):
        build_config(VideoConfig, None, {"dataset": "d"}, sets)
