"""The CLI contract (DESIGN §3): exit codes 0/1/2, one ``error:`` line on stderr, ``--json``
prints exactly one JSON document. Most cases run in-process through ``mmkit.cli.main.main``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

import mmkit
from mmkit.cli.main import main
from mmkit.errors import UnknownPluginError, UserInputError
from mmkit.registry import BACKBONES, register_backbone
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "zzcli"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("MMKIT_DEBUG", "0")


@pytest.fixture
def plugin():
    @register_backbone(PLUGIN, modality="video")
    def zzcli(*, num_classes: int, width: int = 12):
        """Throw-away backbone for CLI tests."""
        return nn.Linear(width, num_classes)

    yield
    BACKBONES.unregister(PLUGIN)


def run(argv, capsys):
    """``mmkit ARGV`` in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else code), captured.out, captured.err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"mmkit {mmkit.__version__}"


def test_python_dash_m_version():
    proc = run_cli("--version", timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"mmkit {mmkit.__version__}"


def test_list_json(plugin, capsys):
    code, out, _ = run(["list", "--json"], capsys)
    assert code == 0
    data = json.loads(out)  # the whole of stdout is one JSON document
    assert isinstance(data, list) and data
    for entry in data:
        assert {"name", "kind", "modality", "description", "arguments"} <= set(entry)
        assert entry["kind"] in ("backbone", "preprocessor", "layout")
    mine = [e for e in data if e["name"] == PLUGIN]
    assert mine == [
        {
            "name": PLUGIN,
            "kind": "backbone",
            "modality": "video",
            "description": "Throw-away backbone for CLI tests.",
            "tags": [],
            "module": __name__,
            "arguments": {"num_classes": "required", "width": "12"},
            "input": "clips",
            "weights": {},
        }
    ]


def test_list_filters(plugin, capsys):
    _, out, _ = run(["list", "--kind", "preprocessor", "--json"], capsys)
    pre = json.loads(out)
    assert all(e["kind"] == "preprocessor" for e in pre)
    assert PLUGIN not in [e["name"] for e in pre]
    _, out, _ = run(["list", "--modality", "video", "--kind", "backbone", "--json"], capsys)
    video = json.loads(out)
    assert PLUGIN in [e["name"] for e in video]
    assert all(e["modality"] == "video" and e["kind"] == "backbone" for e in video)


def test_list_table(plugin, capsys):
    code, out, _ = run(["list", "--modality", "video"], capsys)
    assert code == 0
    assert PLUGIN in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_list_bad_kind_is_a_usage_error_naming_the_choices(capsys):
    code, out, err = run(["list", "--kind", "backbones"], capsys)
    assert code == 2
    assert out == ""
    assert "'backbones' is not one of" in err and "'preprocessor'" in err
    assert "Traceback" not in err


def test_list_kind_from_the_library_is_one_line():
    """The library still names a bad kind itself (the CLI's choices stop it earlier)."""
    from mmkit.registry import list_plugins

    with pytest.raises(UserInputError, match="--kind must be one of backbone, preprocessor"):
        list_plugins("backbones")


def test_describe(plugin, capsys):
    code, out, _ = run(["describe", PLUGIN, "--json"], capsys)
    assert code == 0
    assert json.loads(out)["arguments"] == {"num_classes": "required", "width": "12"}
    code, out, _ = run(["describe", PLUGIN], capsys)
    assert code == 0
    assert PLUGIN in out and "width" in out and "12" in out


def test_describe_unknown_is_exit_1_one_line(plugin, capsys):
    code, out, err = run(["describe", PLUGIN + "x", "--json"], capsys)
    assert code == 1
    assert out == ""  # --json: nothing half-printed on stdout
    assert_one_error_line(err, f"unknown plugin '{PLUGIN}x'", f"Did you mean '{PLUGIN}'?")


def test_debug_env_reraises(plugin, capsys, monkeypatch):
    monkeypatch.setenv("MMKIT_DEBUG", "1")
    with pytest.raises(UnknownPluginError):
        main(["describe", PLUGIN + "x"])


def test_unknown_option_is_usage_error(capsys):
    code, _, err = run(["list", "--nope"], capsys)
    assert code == 2
    assert "--nope" in err
    assert "Traceback" not in err


def test_unknown_command_is_usage_error(capsys):
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2
    assert "Traceback" not in err


def test_bad_option_value_is_usage_error(capsys):
    code, _, err = run(["audio", "train", "--dataset", "x", "--epochs", "0"], capsys)
    assert code == 2
    assert "Traceback" not in err


def test_audio_train_without_dataset(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["audio", "train", "--json"], capsys)
    assert code == 1
    assert out == ""
    assert_one_error_line(err, "--dataset is required")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_audio_train_missing_dataset_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(
        ["audio", "train", "--dataset", "./no_such_dir", "--out", "run", "--json"], capsys
    )
    assert code == 1
    assert out == ""
    assert_one_error_line(err, "dataset not found: ./no_such_dir")


def test_audio_train_config_file_errors(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("dataset: d\nepoch: 3\n")
    code, _, err = run(["audio", "train", "--config", str(cfg)], capsys)
    assert code == 1
    assert_one_error_line(err, "'epoch'", "did you mean 'epochs'?")


def test_audio_infer_missing_checkpoint(tmp_path, capsys):
    wav = tmp_path / "x.wav"
    wav.write_bytes(b"RIFF")
    code, out, err = run(
        ["audio", "infer", str(wav), "--checkpoint", str(tmp_path / "nope"), "--json"], capsys
    )
    assert code == 1
    assert out == ""
    assert_one_error_line(err, "checkpoint not found", str(tmp_path / "nope"))


def test_audio_eval_missing_checkpoint(tmp_path, capsys):
    code, out, err = run(
        [
            "audio",
            "eval",
            "--checkpoint",
            str(tmp_path / "nope"),
            "--dataset",
            str(tmp_path),
            "--json",
        ],
        capsys,
    )
    assert code == 1
    assert out == ""
    assert_one_error_line(err, "checkpoint not found")


def test_console_script_error_is_one_stderr_line(tmp_path):
    """The installed ``mmkit`` script, as a user runs it: exit 1, one line, no traceback."""
    exe = Path(sys.executable).with_name("mmkit")
    if not exe.exists():
        pytest.skip("mmkit console script not installed in this environment")
    env = dict(os.environ, MMKIT_DEBUG="0", COLUMNS="40")
    proc = subprocess.run(
        [str(exe), "audio", "infer", "x.wav", "--checkpoint", "missing_run_dir", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert_one_error_line(proc.stderr, "checkpoint not found: missing_run_dir")


def test_list_wildcard_filter(plugin, capsys):
    code, out, _ = run(["list", "*vit*", "--json"], capsys)
    assert code == 0
    names = [e["name"] for e in json.loads(out)]
    assert "video_vit" in names and "image_vit" in names
    assert all("vit" in n for n in names)
    assert "audio_cnn" not in names
    _, out, _ = run(["list", "ZZ*", "audio_cnn", "--json"], capsys)  # any pattern, any case
    assert sorted(e["name"] for e in json.loads(out)) == ["audio_cnn", PLUGIN]
    _, out, _ = run(["list", "*vit*", "--kind", "preprocessor", "--json"], capsys)
    assert json.loads(out) == []
    code, out, _ = run(["list", "video_*"], capsys)  # the table too
    assert code == 0 and "video_vit" in out and "audio_cnn" not in out


# -- output: plain lines off a terminal, tables for nested results ----------------------------
EPOCH = {
    "epoch": 3,
    "train_loss": 0.51234,
    "train_seconds": 4.2,
    "val_loss": 0.6,
    "val_accuracy": 0.125,
    "val_macro_f1": 0.0833,
    "val_top5_accuracy": 0.9,
}


def test_plain_progress_prints_one_unwrapped_line_per_epoch():
    import io

    from mmkit.cli.output import PlainProgress

    ticks = iter(range(100))
    stream = io.StringIO()
    progress = PlainProgress(stream, every=1000, clock=lambda: float(next(ticks)))
    progress.start("epoch 3/30", 12)
    for _ in range(12):
        progress.advance(1, loss=0.5, lr=0.003)
    progress.end(**EPOCH)
    progress.message("skipped a.wav: cannot decode")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert len(lines[0]) > 80  # longer than a default console: it must not wrap
    assert lines[0].startswith("epoch 3/30  12/12  epoch 3  train_loss 0.5123")
    assert "val_accuracy 0.125  val_macro_f1 0.0833" in lines[0]
    assert lines[1] == "skipped a.wav: cannot decode"


def test_plain_progress_reports_long_phases_periodically():
    import io

    from mmkit.cli.output import PlainProgress

    now = [0.0]
    stream = io.StringIO()
    progress = PlainProgress(stream, every=30.0, clock=lambda: now[0])
    progress.start("prepare", 1000)
    for _ in range(1000):
        now[0] += 0.1
        progress.advance(1)
    progress.end(items=1000, skipped=0)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("prepare  300/1000")
    assert len(lines) == 4  # at 30 s, 60 s, 90 s, then the end
    assert lines[-1].startswith("prepare  1000/1000  items 1000  skipped 0")


def test_progress_is_plain_off_a_terminal_and_bars_on_one(monkeypatch):
    from rich.console import Console

    from mmkit.cli import output

    assert isinstance(output.progress_for(False), output.PlainProgress)  # pytest captures stderr
    assert isinstance(output.progress_for(True), output.MessagesOnly)  # notes only, no bars
    monkeypatch.setattr(output, "err", Console(stderr=True, force_terminal=True))
    assert isinstance(output.progress_for(False), output.RichProgress)


def test_piped_stderr_of_a_real_command_is_plain_and_unwrapped(tmp_path):
    """``mmkit audio prepare 2>log`` at 80 columns: a summary line per phase, no bar glyphs, and
    a note longer than 80 characters stays on one line."""
    import numpy as np
    import soundfile as sf

    for label, freq in (("low", 220), ("high", 880)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            t = np.arange(8000) / 16000
            tone = 0.3 * np.sin(2 * np.pi * (freq + 10 * i) * t)
            sf.write(tmp_path / "data" / label / f"{i}.wav", tone, 16000)
    store = tmp_path / ("a_long_store_directory_name_" * 3)
    args = ["audio", "prepare", "-d", str(tmp_path / "data"), "-o", str(store)]
    first, second = (run_cli(*args, timeout=120, COLUMNS="80") for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(r"prepare  6/6  items 6  skipped 0  \d+\.\ds\n", first.stderr)
    assert second.returncode == 0, second.stderr
    assert second.stderr == f"using prepared store {store}\n"
    assert len(second.stderr) > 80


DEMO_MM = {
    "run_dir": "runs/demo/mm",
    "test_image_to_text": {"R@1": 0.5357142857142857, "R@5": 0.9285714285714286, "R@10": 1.0},
    "test_text_to_image": {"R@1": 0.4642857142857143, "R@5": 0.8571428571428571, "R@10": 1.0},
    "test_zero_shot_accuracy": 0.75,
    "predictions": ["img.png (truth: 'a red circle')", "+0.812 0.640 a red circle"],
}
DEMO_AUDIO = {
    "test_accuracy": 0.9166666666666666,
    "predictions": [{"path": "a/yes/1.flac", "predicted": "yes", "truth": "yes"}],
}


def test_nested_results_render_as_tables_with_rounded_numbers():
    import io

    from rich.console import Console

    from mmkit.cli.output import mapping_tables

    buffer = io.StringIO()
    console = Console(file=buffer, width=100)
    for part in (*mapping_tables("mm", DEMO_MM), *mapping_tables("audio", DEMO_AUDIO)):
        console.print(part)
    text = buffer.getvalue()
    assert "{" not in text and "0.5357142857" not in text  # no dict reprs, no long floats
    row = next(line for line in text.splitlines() if "test_image_to_text" in line)
    assert re.findall(r"\d\.\d{4}", row) == ["0.5357", "0.9286", "1.0000"]
    assert "0.9167" in text and "0.7500" in text
    assert re.search(r"a/yes/1\.flac\s*│\s*yes\s*│\s*yes", text)
    assert "+0.812 0.640 a red circle" in text


def test_render_train_has_no_dict_repr(capsys):
    from mmkit.cli.output import render_train

    render_train(
        {
            "run_dir": "runs/x",
            "best_checkpoint": "runs/x/best",
            "epochs": 3,
            "best_metric": {"epoch": 2, "val_accuracy": 0.9166666666666666},
        },
        json_mode=False,
    )
    out = capsys.readouterr().out
    assert "best epoch 2  val_accuracy 0.9167" in out
    assert "{" not in out
