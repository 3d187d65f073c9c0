"""The cross-engine protocol (benchmarks/cross_engine.py), reduced: train mmkit's default recipe on
one speech engine's voices, score it on the other engine's voices in unseen formats and lengths.

Slow (a few minutes on 2 cores): ``pytest -m slow tests/test_cross_engine_protocol.py``. The full
protocol and its figures are in benchmarks/RESULTS-audio.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VOICES = 12
CHANCE = 0.1


@pytest.mark.slow
def test_default_recipe_beats_chance_on_an_unseen_engine(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "cross_engine.py"), "--json"]
    cmd += ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs")]
    cmd += ["--voices", str(VOICES), "--seeds", "0", "--epochs", "20"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert set(report) >= {"recipe", "settings", "epochs", "seeds", "data", "directions", "code"}
    assert report["recipe"] == "mmkit" and report["seeds"] == [0] and report["epochs"] == 20
    assert set(report["directions"]) == {"espeak-flite", "flite-espeak"}
    for name, d in report["directions"].items():
        train, test = name.split("-")
        assert d["train"]["engine"] == train and d["test"]["engine"] == test
        assert d["num_samples"] == d["test"]["files"] == VOICES * 10
        assert set(d["accuracy"]) == set(d["macro_f1"]) == {"mean", "std", "min", "max"}
        (seed,) = d["seeds"]
        assert seed["num_samples"] == seed["last_num_samples"] == VOICES * 10
        assert set(seed["per_format"]) == {
            "mp3-44k-stereo",
            "flac-24bit-48k",
            "ogg-22k",
            "wav-u8-8k",
            "wav-16k",
        }
        print(f"{name}: accuracy {seed['accuracy']:.3f} macro-F1 {seed['macro_f1']:.3f}")
        assert seed["accuracy"] > 3 * CHANCE, (name, seed)
        assert seed["macro_f1"] > 2 * CHANCE, (name, seed)
