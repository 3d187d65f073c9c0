"""``mmkit export``: ONNX and TorchScript graphs of audio, video and image-text checkpoints, run on
real media (espeak speech, ffmpeg-encoded clips, Pillow-drawn scenes), match PyTorch within 1e-4 of
the largest value; the sidecar holds what a runtime needs; the README's onnxruntime snippet gives
``mmkit audio infer``'s top-1."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import mmkit
from mmkit.cli.main import main
from mmkit.engine.checkpoint import save_checkpoint
from mmkit.pipelines import audio, video
from mmkit.pipelines.classify import load_classifier
from mmkit.pipelines.export import export
from mmkit.pipelines.mm import load_clip, pipeline_spec, sim
from mmkit.pipelines.mm_store import decode_image
from mmkit.preprocess.audio import ParamsModule
from mmkit.registry import BACKBONES, PREPROCESSORS, create_backbone, create_preprocessor
from mmkit.spec import CheckpointSpec
from mmkit.tasks.classify import Classifier
from mmkit.tasks.contrastive import create_pipeline
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["yes", "no", "up", "down", "left", "right"]
RTOL = 1e-4


def assert_close(got: np.ndarray | torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| <= RTOL * max |ref|; returns the relative difference."""
    got = torch.as_tensor(np.asarray(got))
    assert got.shape == ref.shape
    diff = float((got - ref).abs().max())
    scale = float(ref.abs().max())
    assert diff <= RTOL * scale, (diff, scale)
    return diff / scale


def session(path: str | Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(path: str | Path, x: torch.Tensor) -> np.ndarray:
    s = session(path)
    return s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]


def save_classifier(root: Path, modality: str, stages, backbone: str, labels, train) -> Path:
    """A run directory whose ``best`` checkpoint is a seeded, untrained classifier."""
    torch.manual_seed(0)
    model = Classifier(
        nn.Sequential(*(m for _, m in stages)),
        create_backbone(backbone, num_classes=len(labels)),
    )
    nn.init.normal_(model.backbone.head.weight, std=0.5)  # logits far apart: a clear top-1
    config = {
        "mmkit_version": mmkit.__version__,
        "modality": modality,
        "task": "classify",
        "backbone": {"name": backbone, "kwargs": {}},
        "preprocess": {"input": [{"name": n, "params": m.params()} for n, m in stages]},
        "labels": list(labels),
        "data": {"params": {}},
        "train": train,
    }
    save_checkpoint(root / "best", model, CheckpointSpec.from_json(config))
    return root


def audio_stages(first: list | None = None) -> list:
    cfg = audio.AudioConfig(dataset="-", duration=1.0)
    return [
        *(first or [("wave_augment", create_preprocessor("wave_augment", sample_rate=16000))]),
        ("log_mel", create_preprocessor("log_mel", **cfg.log_mel_params())),
        ("spec_augment", create_preprocessor("spec_augment")),
    ]


AUDIO_TRAIN = {"sample_rate": 16000, "duration": 1.0}


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An audio run trained with augmentation stages (wave_augment, spec_augment)."""
    root = tmp_path_factory.mktemp("export_audio") / "run"
    return save_classifier(root, "audio", audio_stages(), "audio_cnn_test", WORDS, AUDIO_TRAIN)


@pytest.fixture(scope="module")
def audio_onnx(audio_run: Path) -> dict:
    """``mmkit export --format onnx --json`` into the run's default place."""
    proc = run_cli("export", "--checkpoint", str(audio_run), "--format", "onnx", "--json", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # exactly one JSON document, exporter chatter kept away


def speech_views(path: Path, trained) -> torch.Tensor:
    views, _ = audio.MODALITY.file_views(str(path), trained)
    return views


# -- audio ---------------------------------------------------------------------------------------
def test_audio_onnx_matches_pytorch_on_real_speech(audio_run, audio_onnx, audio_variants) -> None:
    sidecar = audio_run / "export" / "model.json"
    assert audio_onnx["sidecar"] == str(sidecar)
    assert audio_onnx["models"]["model"]["file"] == str(audio_run / "export" / "model.onnx")
    meta = json.loads(sidecar.read_text())
    assert meta["labels"] == WORDS
    info = meta["models"]["model"]
    assert info["file"] == "model.onnx"
    assert info["in_graph"] == ["log_mel", "audio_cnn_test"]
    assert [s["name"] for s in info["omitted"]] == ["wave_augment", "spec_augment"]
    assert info["outside_graph"] == []
    assert info["input"]["dtype"] == "float32" and info["input"]["shape"] == ["batch", 16000]
    assert meta["preprocessing"]["sample_rate"] == 16000
    ops = {node.op_type for node in onnx.load(audio_onnx["models"]["model"]["file"]).graph.node}
    assert "STFT" in ops  # the log-mel front end is in the graph...
    assert not any(
        op.startswith(("Random", "Multinomial", "Bernoulli")) for op in ops
    )  # ...noise not

    loaded = load_classifier(audio_run, audio.MODALITY, "cpu")
    for name in ("wav_16", "wav_44k", "stereo", "mp3", "long"):
        views = speech_views(audio_variants[name].path, loaded.trained)
        with torch.no_grad():
            ref = loaded.model(views)
        assert_close(run_onnx(audio_onnx["models"]["model"]["file"], views), ref)
    assert len(views) > 1  # the long clip: several windows in one batch (dynamic batch axis)


def test_audio_torchscript_round_trip(audio_run, audio_variants, tmp_path) -> None:
    result = export(audio_run, "torchscript", tmp_path / "kws.pt")
    assert result["sidecar"] == str(tmp_path / "kws.json")
    scripted = torch.jit.load(result["models"]["model"]["file"])
    loaded = load_classifier(audio_run, audio.MODALITY, "cpu")
    for name in ("wav_24", "long"):
        views = speech_views(audio_variants[name].path, loaded.trained)
        with torch.no_grad():
            assert_close(scripted(views), loaded.model(views))


class PeakLimit(ParamsModule):
    """Scales a batch down when its peak passes ``limit``: a Python branch on the data, which
    neither torch.export mode can capture."""

    def __init__(self, *, limit: float = 0.5) -> None:
        super().__init__(limit=limit)
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        peak = float(x.abs().max())
        return x * (self.limit / peak) if peak > self.limit else x * 1.0


class NumpyNet(nn.Module):
    """A backbone that goes through numpy."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(1, num_classes)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        pooled = torch.from_numpy(spec.detach().numpy().mean(axis=(1, 2, 3))[:, None])
        return self.head(pooled)


@pytest.fixture
def limit_plugins():
    PREPROCESSORS.register("zz_peak_limit", modality="audio")(PeakLimit)
    BACKBONES.register("zz_numpy_net", modality="audio")(
        lambda *, num_classes: NumpyNet(num_classes)
    )
    yield
    PREPROCESSORS.unregister("zz_peak_limit")
    BACKBONES.unregister("zz_numpy_net")


def test_a_stage_that_cannot_export_runs_before_the_graph(
    limit_plugins, audio_variants, tmp_path
) -> None:
    stages = audio_stages([("zz_peak_limit", PeakLimit(limit=0.05))])
    run = save_classifier(tmp_path / "run", "audio", stages, "audio_cnn_test", WORDS, AUDIO_TRAIN)
    result = export(run, "onnx")
    info = json.loads(Path(result["sidecar"]).read_text())["models"]["model"]
    assert info["outside_graph"] == [{"name": "zz_peak_limit", "params": {"limit": 0.05}}]
    assert info["in_graph"] == ["log_mel", "audio_cnn_test"]
    assert info["input"]["description"].startswith("the output of the outside_graph stages")
    loaded = load_classifier(run, audio.MODALITY, "cpu")
    views = speech_views(audio_variants["long"].path, loaded.trained)
    with torch.no_grad():
        ref = loaded.model(views)
        before = loaded.model.preprocess[0](views)
    assert_close(run_onnx(info_file(result), before), ref)


def info_file(result: dict) -> str:
    return result["models"]["model"]["file"]


def cli_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_one_line(limit_plugins, audio_run, tmp_path, capsys) -> None:
    missing = str(tmp_path / "nowhere")
    assert "checkpoint not found" in cli_error(
        ["export", "--checkpoint", missing, "--format", "onnx"], capsys
    )
    assert "onnx, torchscript" in cli_error(
        ["export", "--checkpoint", str(audio_run), "--format", "tflite"], capsys
    )
    stages = [("log_mel", create_preprocessor("log_mel", n_mels=32))]
    run = save_classifier(tmp_path / "bad", "audio", stages, "zz_numpy_net", WORDS, AUDIO_TRAIN)
    err = cli_error(["export", "--checkpoint", str(run), "--format", "torchscript"], capsys)
    assert err.startswith("error: cannot export zz_numpy_net to torchscript: ")
    assert not any((run / "export").iterdir())  # no graph, no sidecar, no partial file


# -- video ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = video.VideoConfig(dataset="-", frames=8, size=32, num_clips=2, store_frames=16)
    stages = [("video_transform", video.MODALITY.stages(cfg, None)[0][1])]
    train = {k: getattr(cfg, k) for k in video.MODALITY.shape_keys}
    root = tmp_path_factory.mktemp("export_video") / "run"
    return save_classifier(root, "video", stages, "video_r3d_test", ["left", "right"], train)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_video_export_matches_pytorch_on_encoded_clips(video_run, video_formats, fmt, tmp_path):
    result = export(video_run, fmt, tmp_path / "motion")
    info = json.loads(Path(result["sidecar"]).read_text())["models"]["model"]
    assert info["in_graph"] == ["video_transform", "video_r3d_test"]
    assert info["input"]["dtype"] == "uint8"
    assert info["input"]["shape"] == ["batch", 8, 37, 37, 3]
    path = info_file(result)
    assert path == str(tmp_path / ("motion.onnx" if fmt == "onnx" else "motion.pt"))
    loaded = load_classifier(video_run, video.MODALITY, "cpu")
    for name in ("h264_mp4", "odd", "vp9_webm"):
        views, _ = video.MODALITY.file_views(str(video_formats.paths[name]), loaded.trained)
        assert views.shape == (2, 8, 37, 37, 3)  # two test clips in one batch
        with torch.no_grad():
            ref = loaded.model(views)
            got = run_onnx(path, views) if fmt == "onnx" else torch.jit.load(path)(views)
        assert_close(got, ref)


# -- image-text ----------------------------------------------------------------------------------
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLIP_BACKBONES = {
    "clip_lite_test": {},
    "open_clip_model": {"model_name": "export-tiny-clip", "model_kwargs": TINY_OPEN_CLIP},
}


@pytest.fixture(scope="module")
def clip_run(request, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    pipeline, parts = create_pipeline(request.param, CLIP_BACKBONES[request.param])
    root = tmp_path_factory.mktemp("export_clip") / "run"
    spec = pipeline_spec(parts, labels=["circle", "square"])
    save_checkpoint(root / "best", pipeline, spec)
    return root


CLIP_CASES = [
    ("clip_lite_test", "onnx"),
    ("clip_lite_test", "torchscript"),
    ("open_clip_model", "torchscript"),
    # the same exporter path as clip_lite's towers, ~10 s more: in the slow suite
    pytest.param("open_clip_model", "onnx", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("clip_run", "fmt"), CLIP_CASES, indirect=["clip_run"])
def test_clip_towers_give_mm_sim_outside_mmkit(clip_run, scene_sample, fmt, tmp_path) -> None:
    from open_clip.tokenizer import SimpleTokenizer

    result = export(clip_run, fmt, tmp_path / "clip.x")
    meta = json.loads(Path(result["sidecar"]).read_text())
    assert set(meta["models"]) == {"image", "text"}
    assert meta["models"]["image"]["in_graph"][0] == "image_transform"
    loaded = load_clip(clip_run, device="cpu")
    size = meta["image_preprocessing"]["image_size"]
    assert meta["models"]["image"]["input"]["shape"] == ["batch", size, size, 3]

    images = torch.from_numpy(
        np.stack([decode_image(r.path, meta["image_preprocessing"]) for r in scene_sample])
    )
    captions = [c for r in scene_sample for c in r.captions]
    # the sidecar's tokenizer settings give the ids mmkit's tokenizer gives
    tokenizer = SimpleTokenizer(context_length=meta["tokenizer"]["context_length"])
    tokens = tokenizer(captions)
    assert torch.equal(tokens, loaded.tokenizer(captions))
    files = {part: info["file"] for part, info in result["models"].items()}
    if fmt == "onnx":
        image_f, text_f = run_onnx(files["image"], images), run_onnx(files["text"], tokens)
    else:
        with torch.no_grad():
            image_f = torch.jit.load(files["image"])(images).numpy()
            text_f = torch.jit.load(files["text"])(tokens).numpy()
    with torch.no_grad():
        assert_close(image_f, loaded.pipeline.encode_images(images))
        assert_close(text_f, loaded.pipeline.encode_texts(tokens))
    # similarity as mm sim computes it, from the exported embeddings and the sidecar's scale
    assert meta["logit_scale"] == pytest.approx(float(loaded.pipeline.model.scale().detach()))
    texts = list(scene_sample[0].captions) + list(scene_sample[1].captions)
    logits = meta["logit_scale"] * image_f[0] @ text_f[: len(texts)].T
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    expected = sim([str(scene_sample[0].path)], texts, loaded)
    got = dict(zip(texts, probs.tolist(), strict=True))
    for score in expected["scores"]:
        assert got[score["text"]] == pytest.approx(score["probability"], abs=1e-5)


# -- the README snippet --------------------------------------------------------------------------
def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "onnxruntime" in b]
    assert len(blocks) == 1
    return blocks[0]


def test_readme_onnxruntime_snippet_gives_audio_infer_top1(
    audio_run, audio_onnx, audio_variants, tmp_path
) -> None:
    snippet = readme_snippet()
    assert "mmkit" not in snippet.replace("runs/kws", "")  # numpy, soundfile, onnxruntime only
    files = [audio_variants["wav_16"].path, audio_variants["long"].path]
    proc = run_cli(
        "audio", "infer", *map(str, files), "--checkpoint", str(audio_run), "--json", cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    expected = {r["path"]: r["top_k"][0] for r in json.loads(proc.stdout)}
    export_dir = audio_run / "export"
    for wav in files:
        script = (
            snippet.replace("runs/kws/export/model.json", str(export_dir / "model.json"))
            .replace("runs/kws/export/model.onnx", str(export_dir / "model.onnx"))
            .replace('"clip.wav"', repr(str(wav)))
        )
        path = tmp_path / "snippet.py"
        path.write_text(script)
        out = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=120
        )
        assert out.returncode == 0, out.stderr
        label, score = out.stdout.split()
        assert label == expected[str(wav)]["label"]
        assert math.isclose(float(score), expected[str(wav)]["score"], abs_tol=1e-5)
