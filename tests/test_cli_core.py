"""The CLI contract (DESIGN §3): exit codes 0/1/2, one ``error:`` line on stderr, ``--json``
prints exactly one JSON document. Most cases run in-process through ``mmkit.cli.main.main``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

import mmkit
from mmkit.cli.main import main
from mmkit.errors import UnknownPluginError, UserInputError
from mmkit.registry import BACKBONES, register_backbone

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
    proc = subprocess.run(
        [sys.executable, "-m", "mmkit", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"mmkit {mmkit.__version__}"


def test_list_json(plugin, capsys):
    code, out, _ = run(["list", "--json"], capsys)
    assert code == 0
    data = json.loads(out)  # the whole of stdout is one JSON document
    assert isinstance(data, list) and data
    for entry in data:
        assert {"name", "kind", "modality", "description", "arguments"} <= set(entry)
        assert entry["kind"] in ("backbone", "preprocessor")
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
