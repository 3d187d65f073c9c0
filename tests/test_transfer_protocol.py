"""The transfer protocols for ``--pretrained`` end to end at a tiny size: the audio one
(``benchmarks/transfer.py``: espeak digits -> flite command words) and the video one
(``benchmarks/transfer_video.py``: pans/tilts -> zooms/rolls). One seed, a few epochs, tiny data
in the test's own folder; what is checked is the report: every mode run at every size, every
test clip scored (``num_samples`` equal to the clips written), the summary keys. The figures
at the protocols' defaults are in the README and ``benchmarks/results/transfer/``.

Slow (about 20 s each on one core): ``pytest -m slow tests/test_transfer_protocol.py``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODES = ("scratch", "finetune", "freeze")
SUMMARY = {"mean", "std", "min", "max"}


def run_protocol(module: str, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", module, "--json", "--threads", "1", "--seeds", "0", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def csv_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        return len(list(csv.DictReader(f)))


def check_rows(
    report: dict[str, Any], shots: int, test_files: int, modes: Sequence[str] = MODES
) -> None:
    """Every mode at ``shots`` ran seed 0 and scored all ``test_files`` clips."""
    assert report["seeds"] == [0]
    assert set(report["rows"]) == {f"{mode}-{shots}" for mode in modes}
    for key, row in report["rows"].items():
        assert (row["mode"], row["shots"]) == (key.split("-")[0], shots)
        assert row["num_samples"] == test_files, key
        assert set(row["accuracy"]) == set(row["macro_f1"]) == SUMMARY
        (seed,) = row["seeds"]
        assert seed["seed"] == 0 and seed["num_samples"] == test_files, key
        assert 0 <= seed["accuracy"] <= 1 and 0 <= seed["macro_f1"] <= 1


@pytest.mark.slow
def test_audio_transfer_protocol_scores_every_mode_and_clip(tmp_path: Path) -> None:
    data = tmp_path / "data"  # never the shared cache: another spec there would be rewritten
    report = run_protocol(
        "benchmarks.transfer", "--shots", "2", "--epochs", "1", "--set", "epochs=2",
        "--data", str(data), "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    test_files = csv_rows(data / "test" / "manifest.csv")
    assert report["protocol"] == "transfer-audio" and report["test"]["files"] == test_files
    check_rows(report, 2, test_files)
    assert report["rows"]["scratch-2"]["train_files"] == 2 * 10


@pytest.mark.slow
def test_video_transfer_protocol_scores_every_mode_and_clip(tmp_path: Path) -> None:
    tiny = ["--pretrain-per-class", "2", "--pretrain-test-per-class", "1", "--source-scale"]
    tiny += ["0.25", "--task-per-class", "2", "--test-per-class", "2"]
    tiny += ["--data", str(tmp_path / "data")]
    small_net = ("backbone=video_r3d_test", "frames=8", "size=32")
    pre = [arg for s in small_net for arg in ("--pretrain-set", s)]
    fine = [arg for s in (*small_net, "epochs=2") for arg in ("--set", s)]
    runs = tmp_path / "runs"
    report = run_protocol(
        "benchmarks.transfer_video", "--shots", "2", "--epochs", "2", "--out", str(runs),
        *tiny, *pre, *fine,
    )  # fmt: skip
    assert report["protocol"] == "transfer-video" and report["trace"] is False
    task = Path(report["task"]["data"])
    test_files = csv_rows(task / "test.csv")
    assert test_files == 2 * 4 and report["test"]["files"] == test_files
    check_rows(report, 2, test_files)
    for row in report["rows"].values():
        assert row["train_files"] == 2 * 4 and set(row["last_accuracy"]) == SUMMARY
        (seed,) = row["seeds"]
        assert seed["last_num_samples"] == test_files and 1 <= seed["best_epoch"] <= 2
    pre_report = report["pretrain"]
    assert sorted(pre_report["labels"]) == sorted(["pan_left", "pan_right", "tilt_up", "tilt_down"])
    assert pre_report["test_num_samples"] == pre_report["test_files"] == 4
    assert not pre_report["reused"]

    # the diagnostic: an earlier pretraining run reused, the test clips as validation
    traced = run_protocol(
        "benchmarks.transfer_video", "--shots", "2", "--modes", "finetune", "--trace",
        "--pretrain-run", pre_report["run"], "--out", str(tmp_path / "traced"), *tiny, *fine,
    )  # fmt: skip
    assert traced["pretrain"]["reused"] and traced["pretrain"]["run"] == pre_report["run"]
    check_rows(traced, 2, test_files, modes=("finetune",))
    (seed,) = traced["rows"]["finetune-2"]["seeds"]
    assert len(seed["trace"]) == seed["epochs_run"] == 2
    assert seed["val_items"] == test_files  # validated on the test clips
