"""Training under ``torchrun`` (2 CPU processes, gloo): one JSON document, one set of checkpoints,
agreed early stopping, sharded validation, the same numbers as one process with the same global
batch, and an interrupted run that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, MMKIT_DEBUG="0", OMP_NUM_THREADS="1")


def torchrun(*args: str, procs: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={procs}", "-m", "mmkit", *args]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def audio_store(tmp_path_factory: pytest.TempPathFactory, speech_set) -> str:
    """The speech set with both held-out speaker groups as validation (30 items): early stopping
    is off on fewer than 20 validation items (``engine/tracker.py``)."""
    from mmkit.pipelines import audio
    from tests.media.speech_layouts import write_manifest

    base = tmp_path_factory.mktemp("ddp")
    splits = {v: "train" if s == "train" else "validation"
              for v, s in speech_set.split.mapping().items()}  # fmt: skip
    manifest = write_manifest(base / "manifest.csv", speech_set.items, splits)
    store = audio.prepare(audio.AudioConfig(dataset=str(manifest)), out=base / "audio_store")
    return str(store.path)


def _early_stopping_run(out: Path, modality: str, dataset: str, *extra: str) -> dict:
    """20 epochs at a learning rate too small to help, patience 1: early stopping must end the
    run for both ranks at the same epoch (rank 0 alone used to leave the loop and deadlock)."""
    proc = torchrun(modality, "train", "--dataset", dataset, "--out", str(out), "--epochs", "20",
                    "--patience", "1", "--lr", "1e-9", "--device", "cpu", "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # exactly one JSON document: rank 1 prints nothing
    assert result["epochs"] < 20
    assert [r["epoch"] for r in rows(out)] == list(range(1, result["epochs"] + 1))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "best", "config.yaml", "curves.png", "last", "metrics.jsonl", "tensorboard",
    ]  # fmt: skip
    state = json.loads((out / "last" / "trainer_state.json").read_text())
    assert state["world"] == 2 and state["epoch"] == result["epochs"]
    return result


def test_audio_under_torchrun(audio_store: str, tmp_path: Path) -> None:
    _early_stopping_run(tmp_path / "run", "audio", audio_store, "--backbone", "audio_cnn_test",
                        "--batch-size", "8")  # fmt: skip
    store = json.loads((Path(audio_store) / "mmkit_store.json").read_text())
    validation = sum(1 for item in store["items"] if item["split"] == "validation")
    assert all(r["val_num_samples"] == validation for r in rows(tmp_path / "run"))  # not a shard
    sharded = torchrun("audio", "eval", "-k", str(tmp_path / "run"), "-d", audio_store,
                       "--split", "all", "--device", "cpu", "--json")  # fmt: skip
    alone = run_cli("audio", "eval", "-k", str(tmp_path / "run"), "-d", audio_store, "--split",
                    "all", "--device", "cpu", "--json", timeout=600, cwd=ROOT,
                    OMP_NUM_THREADS="1")  # fmt: skip
    assert sharded.returncode == 0 and alone.returncode == 0, sharded.stderr + alone.stderr
    a, b = json.loads(sharded.stdout), json.loads(alone.stdout)  # one document each
    assert a["num_samples"] == b["num_samples"] == len(store["items"])
    assert a["confusion_matrix"] == b["confusion_matrix"]  # the shards add up to the whole


def test_video_under_torchrun(motion_set, tmp_path: Path) -> None:
    _early_stopping_run(tmp_path / "run", "video", str(motion_set.layouts["folder"]),
                        "--backbone", "video_r3d_test", "--frames", "8", "--size", "48",
                        "--batch-size", "4")  # fmt: skip


def test_image_text_under_torchrun(scene_set, tmp_path: Path) -> None:
    _early_stopping_run(tmp_path / "run", "mm", str(scene_set.layouts["csv_label"]),
                        "--backbone", "clip_lite_test", "--batch-size", "16",
                        "--set", "max_steps_per_epoch=3")  # fmt: skip


def test_two_processes_match_one_with_the_same_global_batch(
    audio_store: str, tmp_path: Path
) -> None:
    """Rank r takes every 2nd item of the same permutation, so 2 x 8 covers exactly the items of
    one batch of 16; only per-rank batch-norm statistics and augmentation draws differ."""
    args = ("audio", "train", "--dataset", audio_store, "--backbone", "audio_cnn_test", "--epochs",
            "4", "--patience", "0", "--seed", "3", "--device", "cpu", "--json")  # fmt: skip
    one = run_cli(*args, "--out", str(tmp_path / "one"), "--batch-size", "16", timeout=600,
                  cwd=ROOT, OMP_NUM_THREADS="1")  # fmt: skip
    two = torchrun(*args, "--out", str(tmp_path / "two"), "--batch-size", "8")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert len(a) == len(b) == 4
    for x, y in zip(a, b, strict=True):  # losses: accuracy over 18 clips moves in steps of 0.06
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=0.05)
        assert y["val_loss"] == pytest.approx(x["val_loss"], rel=0.05)
    assert a[-1]["val_loss"] < a[0]["val_loss"] and b[-1]["val_loss"] < b[0]["val_loss"]


def test_an_interrupted_two_process_run_resumes(audio_store: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["audio", "train", "--dataset", audio_store, "--out", str(run), "--backbone",
            "audio_cnn_test", "--epochs", "40", "--patience", "0", "--batch-size", "8",
            "--device", "cpu", "--json"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mmkit", *args]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (run / "metrics.jsonl").exists() or len(rows(run)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # torchrun passes it to both ranks
    _, stderr = proc.communicate(timeout=300)
    assert stderr.count("interrupted: ") == 1, stderr  # rank 0 speaks for both
    saved = json.loads((run / "last" / "trainer_state.json").read_text())
    assert saved["world"] == 2 and 2 <= saved["epoch"] < 40
    done = torchrun(*args, "--resume")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["epochs"] == 40
    assert [r["epoch"] for r in rows(run)] == list(range(1, 41))
    state = json.loads((run / "last" / "trainer_state.json").read_text())
    per_epoch = saved["global_step"] // saved["epoch"] if not saved["step_in_epoch"] else None
    if per_epoch:
        assert state["global_step"] == 40 * per_epoch
