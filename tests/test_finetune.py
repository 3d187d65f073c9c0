"""Fine-tuning (mmkit/pipelines/finetune.py): the four kinds of ``--pretrained`` start from the
CLI on real speech and video (an mmkit run, a torchvision tag, a torchaudio bundle, a local
file), what each loads and records, the bad sources as one line, ``--freeze backbone`` and
``--backbone-lr-scale``. Tag files are state dicts from torchvision's and torchaudio's own
constructors (random values, the real names) under the real cache file names in a temporary
``$TORCH_HOME``; nothing touches the network."""

from __future__ import annotations

import hashlib
import json
import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmkit import create_backbone
from mmkit.backbones.pretrained import weights_dir, weights_spec
from mmkit.cli.main import main
from mmkit.config import build_config
from mmkit.configs import AudioConfig, VideoConfig
from mmkit.engine.optim import make_optimizer
from mmkit.errors import UserInputError
from mmkit.events import NullProgress
from mmkit.pipelines import audio, finetune, video
from mmkit.pipelines.classify import training_job
from mmkit.preprocess.video import KINETICS_MEAN
from mmkit.spec import CheckpointSpec
from mmkit.tasks.classify import Classifier
from tests.media.speech import default_voices, make_word_set
from tests.media.video import make_motion_set
from tests.media.video_layouts import write_folder_layout

FAST = ("--epochs", "1", "--batch-size", "2", "--num-workers", "0", "--seed", "0", "--json")
ONE_STEP = ("--set", "max_steps_per_epoch=1")


# -- data and helpers ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def words(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny spoken-word sets of 6 clips (3 voices), ``a`` = yes/no, ``b`` = up/down."""
    root = tmp_path_factory.mktemp("finetune_words")
    voices = default_voices()[:3]
    make_word_set(root / "a" / "train", ("yes", "no"), voices)
    make_word_set(root / "b" / "train", ("up", "down"), voices)
    return {"a": root / "a", "b": root / "b"}


@pytest.fixture(scope="module")
def motion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 8-frame 32x32 clips of an object moving left or right."""
    root = tmp_path_factory.mktemp("finetune_motion")
    clips = make_motion_set(
        root / "clips", 2, seed=1, num_frames=8, size=32, directions=("left", "right"),
        source_splits={"train": (0, 1)},
    )  # fmt: skip
    return write_folder_layout(root / "layout", clips)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory, words: dict[str, Path]) -> Path:
    """An audio_cnn_test run on ``a`` with 32 mel bands (not the default 64)."""
    out = tmp_path_factory.mktemp("finetune_source") / "run"
    flags = {"dataset": str(words["a"]), "out": str(out), "backbone": "audio_cnn_test"}
    flags |= {"epochs": 1, "batch_size": 2, "num_workers": 0, "n_mels": 32}
    audio.train(build_config(AudioConfig, None, flags))
    return out


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$TORCH_HOME``, and no network: a download fails as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return weights_dir()


def _cache(state: dict[str, torch.Tensor], backbone: str, tag: str) -> Path:
    path = weights_dir() / weights_spec(backbone, tag).file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``mmkit ARGS`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return info.value.code or 0, captured.out, captured.err


def _trained(capsys: pytest.CaptureFixture[str], *args: str) -> CheckpointSpec:
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    best = Path(json.loads(out)["best_checkpoint"])
    return CheckpointSpec.read(best / "config.json")


def _weights(run: Path, prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    state = load_file(str(run / "best" / "model.safetensors"))
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def _started(cfg: AudioConfig):
    """The job ``audio train`` would run with ``cfg``, its ``--pretrained`` weights loaded."""
    cfg, start = finetune.plan("audio", cfg, NullProgress())
    job = training_job(audio.MODALITY, cfg, NullProgress())
    return cfg, start, finetune.apply(job, cfg, start, resume=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_head(key: str) -> bool:
    return key.startswith(("head.", "fc.", "layer_logits"))


# -- an mmkit run -------------------------------------------------------------------------------
def test_a_run_with_the_same_labels_gives_backbone_and_head(
    source_run: Path, words: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """Backbone, kwargs and the 32 mel bands come from the run; every weight, the head's too,
    is the run's at step 0; the checkpoint records where they came from."""
    flags = {"dataset": str(words["a"]), "pretrained": str(source_run)}
    cfg, start, job = _started(build_config(AudioConfig, None, flags))
    assert (cfg.backbone, cfg.n_mels, start.kind) == ("audio_cnn_test", 32, "run")
    ours, theirs = job.model.backbone.state_dict(), _weights(source_run)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert job.spec.init["head"] == "kept"

    spec = _trained(
        capsys, "audio", "train", "--dataset", str(words["a"]), "--out", str(tmp_path / "ft"),
        "--pretrained", str(source_run), *FAST,
    )  # fmt: skip
    assert spec.backbone.name == "audio_cnn_test" and spec.train["n_mels"] == 32
    assert spec.stages("input")[1].params["n_mels"] == 32  # the log-mel the backbone learned on
    assert spec.init == {
        "kind": "run", "source": str(source_run), "path": str(source_run / "best"),
        "sha256": _sha256(source_run / "best" / "model.safetensors"), "head": "kept",
    }  # fmt: skip
    # --resume continues from the run's own last/ and keeps the first record
    code, _, err = cli(
        capsys, "audio", "train", "--dataset", str(words["a"]), "--out", str(tmp_path / "ft"),
        "--pretrained", str(source_run), "--resume", *FAST, "--epochs", "2",
    )  # fmt: skip
    assert code == 0, err
    last = CheckpointSpec.read(tmp_path / "ft" / "last" / "config.json")
    assert last.epoch == 2 and last.init == spec.init


def test_a_run_with_other_labels_gives_a_new_head_and_freeze_keeps_the_backbone(
    source_run: Path, words: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """up/down after yes/no (the same head shape): the head starts fresh; with --freeze backbone
    two steps change the head only; every backbone tensor, BatchNorm statistics included, is
    the source's."""
    spec = _trained(
        capsys, "audio", "train", "--dataset", str(words["b"]), "--out", str(tmp_path / "ft"),
        "--pretrained", str(source_run), "--freeze", "backbone", "--lr", "0.05", *FAST,
    )  # fmt: skip
    assert spec.labels == ["down", "up"] and spec.init["head"] == "new"
    ours, theirs = _weights(tmp_path / "ft"), _weights(source_run)
    assert ours.keys() == theirs.keys()
    body = [k for k in ours if not _is_head(k)]
    assert any("running_mean" in k for k in body)
    for key in body:
        assert torch.equal(ours[key], theirs[key]), key
    assert not torch.equal(ours["head.weight"], theirs["head.weight"])


# -- a torchvision tag ----------------------------------------------------------------------------
def test_kinetics400_from_the_cli(torch_home: Path, motion: Path, tmp_path: Path, capsys) -> None:
    """``--backbone mc3_18 --pretrained kinetics400`` on tiny clips: torchvision's own keys load;
    the tag's preprocessing is recorded; given frames/size win over the tag's (with a note). A
    vanishing --backbone-lr-scale leaves the loaded backbone where the file put it."""
    from torchvision.models import video as tv_video

    torch.manual_seed(0)
    file_state = tv_video.mc3_18(weights=None).state_dict()
    path = _cache(file_state, "mc3_18", "kinetics400")
    code, out, err = cli(
        capsys, "video", "train", "--dataset", str(motion), "--out", str(tmp_path / "k"),
        "--backbone", "mc3_18", "--pretrained", "kinetics400", "--frames", "4", "--size", "32",
        "--backbone-lr-scale", "1e-30", *FAST, *ONE_STEP,
    )  # fmt: skip
    assert code == 0, err
    assert "note: frames 4 differs from the 16 that --pretrained kinetics400" in err
    spec = CheckpointSpec.read(Path(json.loads(out)["best_checkpoint"]) / "config.json")
    assert spec.init["kind"] == "tag" and spec.init["path"] == str(path)
    assert spec.init["sha256"] == _sha256(path) and spec.init["head"] == "new"
    assert spec.init["preprocessing"]["frames"] == 16 and spec.init["preprocessing"]["size"] == 112
    assert (spec.train["frames"], spec.train["size"]) == (4, 32)
    assert spec.stages("input")[0].params["mean"] == pytest.approx(list(KINETICS_MEAN))
    ours = _weights(tmp_path / "k")
    for key, value in file_state.items():
        if not key.startswith("fc.") and value.is_floating_point() and "running" not in key:
            torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-20, msg=key)


@pytest.mark.parametrize(
    "backbone, frames, size, mean",
    [("r2plus1d_18", 16, 112, KINETICS_MEAN), ("swin3d_t", 32, 224, (0.485, 0.456, 0.406))],
)
def test_a_tags_preprocessing_is_the_default(
    backbone: str, frames: int, size: int, mean: tuple, torch_home: Path
) -> None:
    _cache({"x": torch.zeros(1)}, backbone, "kinetics400")  # read now, checked when loaded
    cfg = build_config(
        VideoConfig, None, {"dataset": "d", "backbone": backbone, "pretrained": "kinetics400"}
    )
    cfg, start = finetune.plan("video", cfg, NullProgress())
    assert (cfg.frames, cfg.size, start.kind) == (frames, size, "tag")
    assert cfg.mean == pytest.approx(mean) and cfg.given() == {"dataset", "backbone", "pretrained"}


# -- a torchaudio bundle, and waveform backbones --------------------------------------------------
def test_hubert_base_linear_probe_from_the_cli(
    torch_home: Path, words: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """``--backbone hubert_base --pretrained HUBERT_BASE --freeze backbone``: every tensor of
    torchaudio's file is in the checkpoint unchanged; the model reads the waveform (no log-mel)."""
    import torchaudio.pipelines as pipelines
    from torchaudio.pipelines._wav2vec2.utils import _get_model  # what bundle.get_model builds

    bundle = pipelines.HUBERT_BASE
    torch.manual_seed(0)
    file_state = _get_model(bundle._model_type, bundle._params).state_dict()
    _cache(file_state, "hubert_base", "HUBERT_BASE")
    spec = _trained(
        capsys, "audio", "train", "--dataset", str(words["a"]), "--out", str(tmp_path / "h"),
        "--backbone", "hubert_base", "--pretrained", "HUBERT_BASE", "--freeze", "backbone",
        *FAST, *ONE_STEP,
    )  # fmt: skip
    assert spec.init["kind"] == "tag" and spec.init["preprocessing"] == {"sample_rate": 16000}
    assert [s.name for s in spec.stages("input")] == ["wave_augment"]
    ours = _weights(tmp_path / "h", "backbone.model.")
    assert ours.keys() == file_state.keys()
    for key, value in file_state.items():
        assert torch.equal(ours[key], value), key
    del file_state, ours


def test_a_waveform_backbone_trains_and_infers(
    words: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """ssl_speech_test: wave augmentation only, no log-mel, in training and in the rebuilt
    checkpoint that infer and eval use."""
    run = tmp_path / "w"
    spec = _trained(
        capsys, "audio", "train", "--dataset", str(words["a"]), "--out", str(run),
        "--backbone", "ssl_speech_test", *FAST,
    )  # fmt: skip
    assert [s.name for s in spec.stages("input")] == ["wave_augment"] and spec.init == {}
    code, out, err = cli(
        capsys, "audio", "infer", str(words["a"]), "--checkpoint", str(run), "--json"
    )
    assert code == 0, err
    results = json.loads(out)
    assert len(results) == 6 and {r["top_k"][0]["label"] for r in results} <= {"yes", "no"}
    code, out, err = cli(
        capsys, "audio", "eval", "--checkpoint", str(run), "--dataset", str(words["a"]),
        "--split", "all", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["num_samples"] == 6
    # and without augmentation it has no stage at all: the checkpoint still reads
    cfg = AudioConfig(dataset="d", backbone="ssl_speech_test", augment=False)
    assert audio.MODALITY.stages(cfg, None) == []


# -- a local file ----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_local_weights_file(suffix: str, words: dict[str, Path], tmp_path: Path, capsys) -> None:
    torch.manual_seed(5)
    state = create_backbone("audio_cnn_test", num_classes=5).state_dict()
    path = tmp_path / f"mine{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    flags = {"dataset": str(words["a"]), "backbone": "audio_cnn_test", "pretrained": str(path)}
    _, _, job = _started(build_config(AudioConfig, None, flags))
    ours = job.model.backbone.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in state.items() if not _is_head(k))
    assert job.spec.init["head"] == "new"  # 5 classes in the file, 2 here

    spec = _trained(
        capsys, "audio", "train", "--dataset", str(words["a"]), "--out", str(tmp_path / "f"),
        "--backbone", "audio_cnn_test", "--pretrained", str(path), *FAST, *ONE_STEP,
    )  # fmt: skip
    assert spec.init["kind"] == "file" and spec.init["sha256"] == _sha256(path)


# -- bad sources: one line ------------------------------------------------------------------------
class Evil:
    def __reduce__(self) -> tuple:
        import os

        return (os.system, ("touch /tmp/mmkit-finetune-pwned",))


@pytest.fixture(scope="module")
def video_run(tmp_path_factory: pytest.TempPathFactory, motion: Path) -> Path:
    out = tmp_path_factory.mktemp("finetune_video") / "run"
    flags = {"dataset": str(motion), "out": str(out), "backbone": "video_r3d_test", "frames": 4}
    flags |= {"size": 32, "epochs": 1, "batch_size": 2, "num_workers": 0}
    video.train(build_config(VideoConfig, None, flags))
    return out


def test_bad_sources_are_one_line(
    source_run: Path, video_run: Path, words: dict[str, Path], motion: Path, torch_home: Path,
    tmp_path: Path, capsys,
) -> None:  # fmt: skip
    evil = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "x": Evil()}, evil)
    torch.manual_seed(0)
    misshapen = create_backbone("audio_cnn_test", num_classes=2).state_dict()
    key = next(k for k in misshapen if k.endswith("weight") and not _is_head(k))
    misshapen[key] = torch.zeros(3)
    save_file(misshapen, str(tmp_path / "misshapen.safetensors"))
    video_net = create_backbone("video_r3d_test", num_classes=2).state_dict()  # another model
    torch.save(video_net, tmp_path / "video_net.pt")
    a, run = ("audio", "train", "--dataset", str(words["a"])), str(source_run)
    cases = [
        ((*a, "--pretrained", str(video_run)), "is a video classify checkpoint, not audio"),
        ((*a, "--pretrained", run, "--backbone", "audio_cnn"), "holds backbone 'audio_cnn_test'"),
        ((*a, "--pretrained", run, "--sample-rate", "8000"), "sample_rate 8000 conflicts with"),
        ((*a, "--pretrained", run, "--set", "backbone_kwargs.dropout=0.3"),
         "backbone_kwargs.dropout is 0.3 here but null in"),
        (("video", "train", "--dataset", str(motion), "--backbone", "r3d_18", "--pretrained",
          "kinetics"), "Did you mean 'kinetics400'? Known tags: kinetics400"),
        ((*a, "--backbone", "audio_cnn_test", "--pretrained", "imagenet"), "has no tags"),
        ((*a, "--backbone", "hubert_base", "--pretrained", "HUBERT_BASE"),
         f"hubert_fairseq_base_ls960.pth is not in {torch_home}"),
        ((*a, "--backbone", "audio_cnn_test", "--pretrained", str(evil)),
         "refused, it holds Python objects besides tensors"),
        ((*a, "--backbone", "audio_cnn_test", "--pretrained", str(tmp_path / "none.pt")),
         "no such file"),
        ((*a, "--backbone", "audio_cnn_test", "--pretrained",
          str(tmp_path / "misshapen.safetensors")), f"does not fit this model (wrong shape {key}"),
        ((*a, "--backbone", "audio_cnn_test", "--pretrained", str(tmp_path / "video_net.pt")),
         "does not fit this model (missing body.0.0.weight, "),
        ((*a, "--freeze", "all"), "Invalid value"),
    ]  # fmt: skip
    for i, (args, fragment) in enumerate(cases):
        out = tmp_path / f"out{i}"
        code, stdout, err = cli(capsys, *args, "--out", str(out), *FAST)
        lines = err.strip().splitlines()
        if fragment == "Invalid value":  # a usage error
            assert code == 2 and fragment in err, err
            continue
        assert code == 1 and stdout == "" and "Traceback" not in err, (args, err)
        errors = [line for line in lines if line.startswith("error: ")]
        assert errors == lines[-1:] and fragment in lines[-1], (fragment, err)
        assert not (out / "best").exists()
    assert not Path("/tmp/mmkit-finetune-pwned").exists()
    offline = cli(capsys, *cases[6][0], "--out", str(tmp_path / "again"), *FAST)[2]
    assert "Temporary failure in name resolution" in offline and "hubert_fairseq" in offline


def test_old_checkpoints_without_init_still_read(source_run: Path) -> None:
    data = json.loads((source_run / "best" / "config.json").read_text())
    assert data.pop("init") == {}
    assert CheckpointSpec.from_json(data).init == {}


# -- --freeze backbone and --backbone-lr-scale ------------------------------------------------
def _classifier() -> Classifier:
    torch.manual_seed(0)
    return Classifier(torch.nn.Sequential(), create_backbone("audio_cnn_test", num_classes=3))


def test_freeze_trains_the_head_only_and_keeps_batchnorm_statistics() -> None:
    model = _classifier()
    model.freeze_backbone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = AudioConfig(dataset="d", lr=0.1, warmup=0.0)
    optimizer, _ = make_optimizer(model, cfg, total_steps=10)
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for n, p in model.named_parameters() if n.startswith("backbone.head.")}
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms) and model.backbone.head.training
    loss = model(torch.randn(4, 1, 32, 41)).square().mean()
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    for key, value in before.items():
        same = torch.equal(after[key], value)
        assert same != key.startswith("backbone.head."), key  # the head changed, nothing else did


def test_backbone_lr_scale_groups() -> None:
    model = _classifier()
    head = {id(p) for n, p in model.named_parameters() if n.startswith("backbone.head.")}
    cfg = AudioConfig(dataset="d", lr=0.5, weight_decay=0.05, backbone_lr_scale=0.25)
    optimizer, _ = make_optimizer(model, cfg, total_steps=10)
    groups = [
        (g["initial_lr"], g["weight_decay"], {id(p) for p in g["params"]} <= head)
        for g in optimizer.param_groups
    ]
    assert sorted(groups) == sorted(
        [(0.5, 0.05, True), (0.5, 0.0, True), (0.125, 0.05, False), (0.125, 0.0, False)]
    )
    optimizer, _ = make_optimizer(model, AudioConfig(dataset="d", lr=0.01), total_steps=10)
    assert len(optimizer.param_groups) == 2  # as before: a saved optimizer state still fits
    with pytest.raises(UserInputError, match=r"--backbone-lr-scale must be > 0, got 0\.0"):
        build_config(AudioConfig, None, {"dataset": "d", "backbone_lr_scale": 0.0})
