"""The bad-input corpus (issue 10): every case is one row, and every row is a test.

A row names a command line, the exit code it must give, and a regular expression its stderr must
match. Exit code 1 means stderr ends in one line ``error: ...`` (after the row's expected notes,
if any), never a traceback; every case must
finish (a hang is a failure after ``TIMEOUT`` s), print no traceback and no mpg123 chatter, and a
``--json`` stdout must be strict JSON (no ``NaN``). ``{name}`` in an argument is replaced by the
file or text of that name that the ``corpus`` fixture builds. Rows with ``env`` run in a fresh
interpreter with those variables changed (``None`` removes one); the others run forked from one
server that imported mmkit once (:mod:`tests.forked_cli`), so the corpus stays fast.

To add a case: build its files in ``corpus`` (or reuse one) and append a :class:`Case`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import mmkit
from mmkit.engine.checkpoint import save_checkpoint
from mmkit.engine.state import TrainerState
from mmkit.spec import CheckpointSpec
from mmkit.tasks import build_model
from tests.forked_cli import ForkedCli, run_fresh
from tests.media.speech import Voice, render, write_audio
from tests.media.video import encode_video, motion_clip

TIMEOUT = 60.0
LONG = "x" * 300  # a file name longer than any file system allows (ENAMETOOLONG)
ERROR_LINE = re.compile(r"^error: \S")
MPG123_CHATTER = re.compile(r"^(Note|Warning): |libmpg123", re.MULTILINE)


@dataclass(frozen=True)
class Case:
    """One bad input: ``mmkit ARGS`` exits ``code`` with stderr matching ``stderr``."""

    id: str
    args: tuple[str, ...]
    code: int
    stderr: str  # re.search pattern; exit 1 also means exactly one "error: " line
    stdout: str | None = None  # re.search pattern for stdout, when it matters
    notes: str | None = None  # exit 1: a pattern the notes before the error line all match
    xfail: str | None = None  # a known failure, and why (strict: fixing it fails the row)
    env: dict[str, str | None] = field(default_factory=dict)  # run fresh with these changes


def infer(kind: str, media: str, ckpt: str, *extra: str) -> tuple[str, ...]:
    return (kind, "infer", f"{{{media}}}", "--checkpoint", f"{{{ckpt}}}", *extra)


def sim(image: str, text: str, ckpt: str = "mm_ck") -> tuple[str, ...]:
    return ("mm", "sim", f"{{{image}}}", text, "--checkpoint", f"{{{ckpt}}}", "--json")


def prepare(kind: str, dataset: str) -> tuple[str, ...]:
    extra = ("--config", "{mm_yaml}") if kind == "mm" else ()
    return (kind, "prepare", "--dataset", f"{{{dataset}}}", "--out", "{out}", "--json", *extra)


FIFO = r"is a named pipe \(FIFO\), not a regular file"
NAN = r"gives non-finite scores for .*: \d+ of \d+ weight tensors hold NaN or inf values"
OFFLINE_ENV = {"HF_HUB_OFFLINE": None, "HF_DATASETS_OFFLINE": None, "HF_ENDPOINT": "{dead_hub}"}

CASES = [
    # -- 3.1 anything that is not a regular file is refused, never opened (a FIFO blocks) ---
    Case("fifo-audio-infer", infer("audio", "fifo_wav", "audio_ck"), 1, rf"fifo\.wav: {FIFO}"),
    Case("fifo-video-infer", infer("video", "fifo_mp4", "video_ck"), 1, rf"fifo\.mp4: {FIFO}"),
    Case("fifo-image-sim", sim("fifo_png", "a red square"), 1, rf"fifo\.png: {FIFO}"),
    Case("fifo-dataset-arg", prepare("audio", "fifo_csv"), 1, rf"dataset .*fifo\.csv: {FIFO}"),
    Case(
        "fifo-in-audio-manifest",
        prepare("audio", "fifo_manifest"),
        0,
        rf"skipped fifo\.wav: {FIFO}",
        stdout=r'"num_items": 2',
    ),
    Case(
        "fifo-in-audio-folder",
        prepare("audio", "bad_folder"),
        0,
        rf"skipped yes/fifo\.wav: {FIFO}",
        stdout=r'"num_items": 2',
    ),
    Case(
        "fifo-in-caption-manifest",
        prepare("mm", "captions_fifo"),
        0,
        rf"skipped fifo\.png: {FIFO}",
        stdout=r'"images": 1',
    ),
    # -- 3.2 non-finite outputs are an error, never NaN in the JSON ----------------------------
    Case("nan-audio-infer", infer("audio", "yes_wav", "audio_nan", "--json"), 1, NAN),
    Case("nan-video-infer", infer("video", "clip_mp4", "video_nan", "--json"), 1, NAN),
    Case("nan-mm-sim", sim("red_png", "a red square", "mm_nan"), 1, NAN),
    Case(
        "nan-audio-eval",
        ("audio", "eval", "--checkpoint", "{audio_nan}", "--dataset", "{good_csv}", "--json"),
        1,
        NAN,
        notes=r"^the dataset has no splits of its own: scoring all 2 items$",
    ),
    # -- 3.3 manifests: every row checked, one line naming file and line; a BOM is read ----
    Case("csv-empty-label", prepare("audio", "empty_label_csv"), 1, r"empty\.csv:3: empty 'label'"),
    Case("csv-bom", prepare("audio", "bom_csv"), 0, r"\A\Z", stdout=r'"num_items": 2'),
    Case("jsonl-line-5", prepare("audio", "five_jsonl"), 1, r"five\.jsonl:2: .*JSON object, got 5"),
    Case("jsonl-line-null", prepare("audio", "null_jsonl"), 1, r"null\.jsonl:3: .*got null"),
    Case("jsonl-label-list", prepare("audio", "list_jsonl"), 1, r"list\.jsonl:1: 'label' must be"),
    Case("captions-jsonl-null", prepare("mm", "caps_null_jsonl"), 1, r"caps\.jsonl:2: .*got null"),
    Case(
        "captions-empty-caption",
        prepare("mm", "caps_empty_csv"),
        1,
        r"caps_empty\.csv:3: empty caption for red\.png",
    ),
    Case("captions-csv-bom", prepare("mm", "caps_bom_csv"), 0, r"\A\Z", stdout=r'"images": 1'),
    Case(
        "coco-json-missing-id",
        prepare("mm", "coco_no_id"),
        1,
        r"captions_train2017\.json: not a valid COCO caption file \(no 'id'\)",
    ),
    # -- 3.4 decode errors: one line naming the file and the real cause ----------------------
    Case("junk-mp3-infer", infer("audio", "junk_mp3", "audio_ck"), 1, r"junk\.mp3: no MPEG audio"),
    Case(
        "junk-mp3-in-dataset",
        prepare("audio", "bad_folder"),
        0,
        r"skipped no/junk\.mp3: no MPEG audio frames found",
    ),
    Case(
        "mp3-corrupt-middle",
        infer("audio", "broken_mp3", "audio_ck"),
        1,
        r"broken\.mp3: corrupt MPEG audio data",
    ),
    Case(
        "mp3-truncated-decodes-quietly",
        infer("audio", "truncated_mp3", "audio_ck", "--json"),
        0,
        r"\A\Z",
        stdout=r'"label": "(yes|no)"',
    ),
    Case(
        "junk-wav", infer("audio", "junk_wav", "audio_ck"), 1, r"junk\.wav: Format not recognised"
    ),
    Case("junk-mp4", infer("video", "junk_mp4", "video_ck"), 1, r"junk\.mp4: Invalid data found"),
    Case("junk-png", sim("junk_png", "a red square"), 1, r"junk\.png: not an image format"),
    Case("long-name-audio", infer("audio", "long_wav", "audio_ck"), 1, r"\(file name too long\)"),
    Case("long-name-video", infer("video", "long_mp4", "video_ck"), 1, r"\(file name too long\)"),
    Case("long-name-image", sim("long_png", "a red square"), 1, r"\(file name too long\)"),
    Case(
        "long-name-dataset",
        prepare("audio", "long_csv"),
        1,
        r"dataset .*: file name too long",
    ),
    Case(
        "long-name-in-manifest",
        prepare("audio", "long_manifest"),
        0,
        r"skipped x{300}\.wav: file name too long",
    ),
    Case("long-name-checkpoint", infer("audio", "yes_wav", "long_csv"), 1, r"file name too long"),
    Case(
        "long-name-config",
        ("audio", "train", "--dataset", "{good_csv}", "--config", "{long_csv}"),
        1,
        r"config file .*: file name too long",
    ),
    # -- 2. every file mmkit reads is checked: one line naming the file and the key ------------
    *(
        Case(f"config-json-{name}", infer("audio", "yes_wav", f"ck_{name}"), 1, message)
        for name, message in (
            ("list", r"config\.json: the top level must be a JSON object, got list"),
            ("no-labels", r"config\.json: labels is empty"),
            ("no-preprocess", r"config\.json: preprocess is missing"),
            ("sample-rate-0", r"config\.json: train: --sample-rate must be >= 1000 Hz, got 0"),
            ("duration-minus-1", r"config\.json: train: --duration must be in"),
            ("absurd-widths", r"config\.json describes a model whose weights do not match"),
            ("newer-format", r"format_version is 99: made by a newer mmkit"),
            ("nan-in-json", r"config\.json: invalid JSON \(NaN is not a number JSON allows"),
        )
    ),
    Case(
        "trainer-state-wrong-type",
        ("audio", "train", "--dataset", "{train_csv}", "--out", "{bad_run}", "--resume",
         "--backbone", "audio_cnn_test", "--json"),
        1,
        r"trainer_state\.json: epoch must be an integer",
        notes=r"^warning: no validation split",
    ),
    Case(
        "store-claims-more-data",
        ("audio", "train", "--dataset", "{short_store}", "--out", "{out}", "--json"),
        1,
        r"data\.bin: holds \d+ bytes but mmkit_store\.json describes \d+",
    ),
    *(
        Case(f"yaml-{name}", ("audio", "train", "--dataset", "{good_csv}", "--config",
                              f"{{yaml_{name}}}"), 1, message)
        for name, message in (
            ("garbage", r"not a UTF-8 text file|not valid YAML"),
            ("wrong-shape", r"noise_snr must be 2 finite numbers, got \[1, 2, 3\]"),
            ("inf-duration", r"duration must be a finite number, got inf"),
            ("alias-bomb", r"expands to more than 100,000 values"),
            ("python-object", r"not valid YAML/JSON"),
        )
    ),
    Case("lr-nan", ("audio", "train", "--dataset", "{good_csv}", "--lr", "nan"), 1,
         r"lr must be a finite number, got nan"),
    Case(
        "mm-eval-nan-checkpoint",
        ("mm", "eval", "--checkpoint", "{mm_nan}", "--dataset", "{caps_bom_csv}", "--json"),
        1,
        r"gives non-finite scores for the images: \d+ of \d+ weight tensors hold NaN",
        notes=r"the dataset has no splits of its own",
    ),
    # -- 2. captions of any length: truncated to the context length, as open_clip does -------
    Case("sim-caption-10000-words", sim("red_png", "{words_10000}"), 0, r"\A\Z", r"similarity"),
    Case("sim-caption-300-chars", sim("red_png", "a" * 300), 0, r"\A\Z", r'"probability": 1\.0'),
    Case("sim-caption-one-huge-word", sim("red_png", "{huge_word}"), 0, r"\A\Z", r"similarity"),
    # -- 3.5 an unreachable hub fails at once in one line (no retry warnings) --------------
    Case(
        "hub-unreachable-audio",
        ("audio", "prepare", "--dataset", "mmkit-test-org/nothing", "--out", "{out}"),
        1,
        r"hub \(http://127\.0\.0\.1:\d+\) is unreachable \(.*\), and it is not in the local cache",
        env=OFFLINE_ENV,
    ),
    Case(
        "hub-unreachable-captions",
        ("mm", "prepare", "--dataset", "mmkit-test-org/no-captions", "--config", "{mm_yaml}"),
        1,
        r"'mmkit-test-org/no-captions': the Hugging Face hub .* is unreachable",
        env=OFFLINE_ENV,
    ),
    Case(
        "mm-pretrained-tag-offline",
        ("mm", "sim", "{red_png}", "a red square", "--model", "ViT-B-32", "--pretrained", "openai"),
        1,
        r"open_clip 'ViT-B-32': cannot fetch pretrained='openai' \(the Hugging Face hub is "
        r"unreachable \(offline\) and it is not in the local cache\)",
    ),
    Case(
        "mm-pretrained-tag-unknown",
        ("mm", "sim", "{red_png}", "a red square", "--model", "ViT-B-32", "--pretrained", "opnai"),
        1,
        r"pretrained='opnai' is not a known tag or valid file path \(tags: openai, laion400m",
    ),
    Case(
        "hub-offline-mode",
        ("audio", "prepare", "--dataset", "mmkit-test-org/nothing", "--out", "{out}"),
        1,
        r"unreachable \(offline mode: HF_HUB_OFFLINE is set\), and it is not in the local cache",
    ),
]


# -- the files ----------------------------------------------------------------------------------
def _audio_checkpoint_config() -> dict:
    return {
        "mmkit_version": mmkit.__version__,
        "modality": "audio",
        "task": "classify",
        "backbone": {"name": "audio_cnn_test", "kwargs": {}},
        "preprocess": [{"name": "log_mel", "params": {"sample_rate": 16000, "n_mels": 32}}],
        "labels": ["no", "yes"],
        "data": {"params": {"sample_rate": 16000, "max_seconds": 30.0}},
        "train": {"duration": 1.0},
    }


def _video_checkpoint_config() -> dict:
    return {
        "mmkit_version": mmkit.__version__,
        "modality": "video",
        "task": "classify",
        "backbone": {"name": "video_r3d_test", "kwargs": {}},
        "preprocess": [{"name": "video_transform", "params": {"size": 32, "short_side": 37}}],
        "labels": ["left", "right"],
        "data": {"params": {"short_side": 37, "store_frames": 8}},
        "train": {"frames": 4, "size": 32, "sampling": "uniform", "store_frames": 8},
    }


def _nan(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return model


def write_checkpoints(root: Path) -> dict[str, Path]:
    """Tiny audio / video / image-text checkpoints (``*_test`` backbones, random weights) and
    the same three with every weight NaN, written by :func:`save_checkpoint`."""
    from mmkit.pipelines import mm

    out = {}
    torch.manual_seed(0)
    for name, config in (
        ("audio", _audio_checkpoint_config()),
        ("video", _video_checkpoint_config()),
    ):
        spec = CheckpointSpec.from_json(config)
        model = build_model(spec)
        out[f"{name}_ck"] = save_checkpoint(root / f"{name}_ck", model, spec)
        out[f"{name}_nan"] = save_checkpoint(root / f"{name}_nan", _nan(model), spec)
    name, kwargs = mm.model_spec(mm.MMConfig(dataset="-", backbone="clip_lite_test"))
    pipeline, parts = mm.create_pipeline(name, kwargs)
    spec = mm.pipeline_spec(parts)
    out["mm_ck"] = save_checkpoint(root / "mm_ck", pipeline, spec)
    out["mm_nan"] = save_checkpoint(root / "mm_nan", _nan(pipeline), spec)
    return out


def write_bad_files(root: Path, good: Path, manifest: Path) -> dict[str, Path]:
    """Damaged copies of what mmkit reads: checkpoint configs, a trainer state, a store
    manifest that claims more data than its data.bin, and experiment YAML files."""
    import shutil

    from mmkit.pipelines import audio

    root.mkdir(parents=True)
    out: dict[str, Path] = {}
    good_config = json.loads((good / "config.json").read_text())
    edits = {
        "list": lambda c: [c],
        "no-labels": lambda c: {**c, "labels": []},
        "no-preprocess": lambda c: {k: v for k, v in c.items() if k != "preprocess"},
        "sample-rate-0": lambda c: {**c, "train": {**c["train"], "sample_rate": 0}},
        "duration-minus-1": lambda c: {**c, "train": {**c["train"], "duration": -1}},
        "absurd-widths": lambda c: {
            **c, "backbone": {"name": "audio_cnn", "kwargs": {"widths": [10**6] * 4}}
        },
        "newer-format": lambda c: {**c, "format_version": 99},
    }
    for name, edit in edits.items():
        ck = shutil.copytree(good, root / f"ck_{name}")
        (ck / "config.json").write_text(json.dumps(edit(good_config)))
        out[f"ck_{name}"] = ck
    ck = shutil.copytree(good, root / "ck_nan-in-json")
    nan = json.dumps({**good_config, "epoch": 0}).replace('"epoch": 0', '"epoch": NaN')
    (ck / "config.json").write_text(nan)
    out["ck_nan-in-json"] = ck
    out["train_csv"] = root / "train.csv"
    rows = [f"{manifest.parent / 'yes.wav'},{word},train\n" for word in ("yes", "no")]
    out["train_csv"].write_text("path,label,split\n" + "".join(rows))
    run = root / "bad_run"
    model = torch.nn.Linear(2, 2)
    save_checkpoint(run / "last", model, CheckpointSpec.from_json(good_config),
                    optimizer=torch.optim.AdamW(model.parameters()), trainer_state=TrainerState())
    state_file = run / "last" / "trainer_state.json"  # then the epoch as a string
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "epoch": "2"}))
    out["bad_run"] = run
    store = audio.prepare(audio.AudioConfig(dataset=str(manifest)), out=root / "short_store")
    data = store.path / "data.bin"
    data.write_bytes(data.read_bytes()[:10])
    out["short_store"] = store.path
    bomb = "\n".join(
        [r'a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
        + ["backbone_kwargs: {w: *a5}"]
    )
    yamls = {
        "garbage": bytes(range(256)) * 2,
        "wrong-shape": b"noise_snr: [1, 2, 3]\n",
        "inf-duration": b"duration: .inf\n",
        "alias-bomb": bomb.encode(),
        "python-object": b"epochs: !!python/object/apply:os.getcwd []\n",
    }
    for name, data_ in yamls.items():
        out[f"yaml_{name}"] = root / f"{name}.yaml"
        out[f"yaml_{name}"].write_bytes(data_)
    return out


def write_mp3_variants(root: Path, speech: torch.Tensor) -> dict[str, Path]:
    """A real MP3 cut in half (decodes, with mpg123 warnings), one with 3 kB of noise in the
    middle (mpg123 gives up), and 4 kB of random bytes named ``junk.mp3``."""
    good = write_audio(root / "speech.mp3", speech, 16000).read_bytes()
    rng = np.random.default_rng(0)
    files = {
        "truncated_mp3": good[: len(good) // 2],
        "broken_mp3": good[:3000] + rng.bytes(3000) + good[6000:],
        "junk_mp3": rng.bytes(4096),
    }
    out = {}
    for key, data in files.items():
        out[key] = root / f"{key.split('_')[0]}.mp3"
        out[key].write_bytes(data)
    return out


def write_manifests(root: Path, yes: str, red: str) -> dict[str, Path]:
    """Manifests beside ``yes`` (a wav) and ``red`` (a png) in ``root``, good and bad."""
    files = {  # key: (file name, text)
        "good_csv": ("good.csv", f"path,label\n{yes},yes\n{yes},no\n"),
        "empty_label_csv": ("empty.csv", f"path,label\n{yes},yes\n{yes},\n"),
        "bom_csv": ("bom.csv", f"\ufeffpath,label\n{yes},yes\n{yes},no\n"),
        "five_jsonl": ("five.jsonl", f'{{"path": "{yes}", "label": "yes"}}\n5\n'),
        "null_jsonl": ("null.jsonl", f'{{"path": "{yes}", "label": "yes"}}\n\nnull\n'),
        "list_jsonl": ("list.jsonl", f'{{"path": "{yes}", "label": ["yes"]}}\n'),
        "fifo_manifest": ("fifo_rows.csv", f"path,label\n{yes},yes\n{yes},no\nfifo.wav,no\n"),
        "long_manifest": ("long.csv", f"path,label\n{yes},yes\n{yes},no\n{LONG}.wav,no\n"),
        "caps_null_jsonl": (
            "caps.jsonl",
            f'{{"image": "{red}", "caption": "a red square"}}\nnull\n',
        ),
        "caps_empty_csv": ("caps_empty.csv", f"image,caption\n{red},a red square\n{red},\n"),
        "caps_bom_csv": ("caps_bom.csv", f"\ufeffimage,caption\n{red},a red square\n"),
        "captions_fifo": ("caps_fifo.csv", f"image,caption\n{red},a red square\nfifo.png,a pipe\n"),
    }
    out = {}
    for key, (name, text) in files.items():
        out[key] = root / name
        out[key].write_text(text, encoding="utf-8")
    coco = root / "coco" / "annotations" / "captions_train2017.json"
    coco.parent.mkdir(parents=True)
    coco.write_text(json.dumps({"images": [{"file_name": red}], "annotations": []}))
    out["coco_no_id"] = coco.parent.parent
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every file and text a case names, by name (see :data:`CASES`)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    out: dict[str, Path | str] = dict(write_checkpoints(root / "checkpoints"))
    media = root / "media"
    media.mkdir()
    speech = render("yes", Voice("espeak", "en-us"), 16000)
    out["yes_wav"] = write_audio(media / "yes.wav", speech, 16000)
    out["clip_mp4"] = encode_video(
        media / "clip.mp4", motion_clip("left", seed=1, num_frames=8, size=48), 12
    )
    out["red_png"] = media / "red.png"
    Image.new("RGB", (40, 40), (200, 10, 10)).save(out["red_png"])
    out.update(write_mp3_variants(media, speech))
    rng = np.random.default_rng(1)
    for name in ("junk.wav", "junk.mp4", "junk.png"):  # text: random bytes may look like MPEG
        (media / name).write_text("this is not a media file\n" * 100)
        out[name.replace(".", "_")] = media / name
    for name in ("fifo.wav", "fifo.mp4", "fifo.png", "fifo.csv"):
        os.mkfifo(media / name)
        out[name.replace(".", "_")] = media / name
    for ext in ("wav", "mp4", "png", "csv"):
        out[f"long_{ext}"] = media / f"{LONG}.{ext}"
    out.update(write_manifests(media, "yes.wav", "red.png"))
    folder = root / "folder"
    for label in ("yes", "no"):
        (folder / label).mkdir(parents=True)
        (folder / label / "a.wav").write_bytes(Path(out["yes_wav"]).read_bytes())
    os.mkfifo(folder / "yes" / "fifo.wav")
    (folder / "no" / "junk.mp3").write_bytes(Path(out["junk_mp3"]).read_bytes())
    out["bad_folder"] = folder
    out.update(write_bad_files(root / "bad_files", Path(out["audio_ck"]), Path(out["good_csv"])))
    out["mm_yaml"] = root / "mm_test.yaml"
    out["mm_yaml"].write_text("backbone: clip_lite_test\n")
    out["out"] = root / "store"
    out["words_10000"] = " ".join(["word"] * 10_000)
    out["huge_word"] = "".join(chr(97 + i) for i in rng.integers(0, 26, 100_000))
    return {k: str(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def dead_hub() -> Iterator[str]:
    """A local URL that refuses connections at once (a bound socket that never listens)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _strict_json(text: str) -> object:
    def refuse(name: str) -> float:
        raise ValueError(f"{name} in the JSON")

    return json.loads(text, parse_constant=refuse)


def _params(cases: list[Case]) -> list[object]:
    return [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)])
        if c.xfail
        else pytest.param(c, id=c.id)
        for c in cases
    ]


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input(
    case: Case, corpus: dict[str, str], cli: ForkedCli, dead_hub: str, tmp_path: Path
) -> None:
    names = dict(corpus, out=str(tmp_path / "store"), dead_hub=dead_hub)
    args = [a.format(**names) for a in case.args]
    if case.env:
        env = dict(os.environ)
        for key, value in case.env.items():
            env.pop(key, None)
            if value is not None:
                env[key] = value.format(**names)
        proc = run_fresh(args, env, timeout=TIMEOUT)
    else:
        proc = cli.run(args, timeout=TIMEOUT)
    assert proc.returncode != 124, f"hung for {TIMEOUT:g} s"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not MPG123_CHATTER.search(proc.stderr), proc.stderr
    assert proc.returncode == case.code, proc.stderr
    if case.code == 1:  # the error is one line, and the last; notes before it only if expected
        *notes, error = proc.stderr.splitlines() or [""]
        assert proc.stderr.endswith("\n") and ERROR_LINE.match(error), proc.stderr
        assert all(case.notes and re.search(case.notes, n) for n in notes), proc.stderr
        assert not proc.stdout, proc.stdout
    assert re.search(case.stderr, proc.stderr, re.MULTILINE), proc.stderr
    if case.stdout is not None:
        assert re.search(case.stdout, proc.stdout), proc.stdout
    if "--json" in args and proc.returncode == 0:
        _strict_json(proc.stdout)


# -- 4. long audio: streamed in bounded memory; the human output summarises -----------------
def write_long_speech(path: Path, seconds: float, rate: int = 22050) -> Path:
    """``seconds`` of real speech (one espeak sentence and half a second of silence, again and
    again), written block by block as 16-bit FLAC at ``rate`` (so inference resamples it)."""
    sentence = "the quick brown fox jumps over the lazy dog, then it runs away"
    clip = render(sentence, Voice("espeak", "en-us"), rate).numpy()
    unit = np.concatenate([clip, np.zeros(rate // 2, dtype=np.float32)])
    total, written = round(seconds * rate), 0
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        while written < total:
            block = unit[: total - written]
            f.write(block)
            written += len(block)
    return path


def test_long_audio_human_output_is_summarised(
    cli: ForkedCli, corpus: dict[str, str], tmp_path: Path
) -> None:
    """Two minutes are 239 one-second windows: ``--json`` lists every one (DESIGN §3), the
    human output shows runs of one label, at most ``MAX_SEGMENTS`` lines, and says how many
    windows there are in all when it cuts."""
    from mmkit.cli.output import MAX_SEGMENTS

    path = str(write_long_speech(tmp_path / "two_minutes.flac", 120.0))
    proc = cli.run(["audio", "infer", path, "--checkpoint", corpus["audio_ck"], "--json"])
    assert proc.returncode == 0, proc.stderr
    [result] = _strict_json(proc.stdout)
    windows = result["windows"]
    assert len(windows) == 239
    assert (windows[0]["start"], windows[-1]["end"]) == (0.0, 120.0)
    proc = cli.run(["audio", "infer", path, "--checkpoint", corpus["audio_ck"]])
    assert proc.returncode == 0, proc.stderr
    segments = re.findall(
        r"^ +\d+\.\d+-\d+\.\d+ +\w+ [\d.]+(?: \((\d+) windows\))?$", proc.stdout, re.M
    )
    assert 1 <= len(segments) <= MAX_SEGMENTS
    more = re.search(
        r"^  \.\.\. (\d+) more segments \(239 windows in all; --json lists", proc.stdout, re.M
    )
    if more is None:  # every run shown: together they are every window
        assert sum(int(n or 1) for n in segments) == 239
    else:
        assert len(segments) == MAX_SEGMENTS
    assert len(proc.stdout.splitlines()) <= MAX_SEGMENTS + 3  # + the file's line (maybe wrapped)


def test_infer_human_output_cuts_many_segments(capsys: pytest.CaptureFixture[str]) -> None:
    """Windows whose best label changes every time: 20 lines, then how many more, in all."""
    from mmkit.cli.output import MAX_SEGMENTS, render_infer

    windows = [
        {"start": i / 2, "end": i / 2 + 1, "top_k": [{"label": "ab"[i % 2], "score": 0.5}]}
        for i in range(300)
    ]
    windows[1:3] = [dict(w, top_k=[{"label": "a", "score": 0.75}]) for w in windows[1:3]]
    render_infer(
        [{"path": "f.wav", "top_k": [{"label": "a", "score": 0.5}], "windows": windows}], False
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + MAX_SEGMENTS + 1
    assert lines[1].split() == ["0.00-2.00", "a", "0.667", "(3", "windows)"]  # 0, 0.5, 1 s
    assert lines[2].split() == ["1.50-2.50", "b", "0.500"]
    tail = f"  ... {298 - MAX_SEGMENTS} more segments (300 windows in all; --json lists every"
    assert lines[-1] == tail + " window)"


def _peak_rss_mb(args: list[str], stdout: Path) -> float:
    """Run ``python -m mmkit ARGS`` and return its peak resident memory (MiB, from wait4)."""
    env = dict(os.environ, MMKIT_DEBUG="0")
    with open(stdout, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmkit", *args],
            stdout=out,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[1],
            env=env,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"mmkit {' '.join(args)} exited {proc.returncode}"
    return usage.ru_maxrss / 1024  # KiB on Linux


@pytest.mark.slow  # ~75 s on 2 cores: 4 hours of audio are decoded and classified
def test_audio_infer_memory_does_not_grow_with_length(
    corpus: dict[str, str], tmp_path: Path
) -> None:
    """Peak RSS of ``audio infer --json`` on 1 h and 3 h of speech (22.05 kHz FLAC) is the same
    within 20% (before streaming: 2.2 GB and 4.9 GB); every window is still in the JSON."""
    peaks = {}
    for hours in (1, 3):
        path = write_long_speech(tmp_path / f"{hours}h.flac", hours * 3600.0)
        out = tmp_path / f"{hours}h.json"
        args = ["audio", "infer", str(path), "--checkpoint", corpus["audio_ck"], "--json"]
        peaks[hours] = _peak_rss_mb(args, out)
        [result] = _strict_json(out.read_text())
        assert len(result["windows"]) == hours * 7200 - 1
        path.unlink()
    assert peaks[3] <= 1.2 * peaks[1], peaks
