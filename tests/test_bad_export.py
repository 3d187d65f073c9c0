"""``mmkit export`` against damaged checkpoints, bad output paths, full disks and kills (issue 19).

Each bad checkpoint or path is one row (as in :mod:`tests.test_bad_inputs`): exit 1 and one
``error:`` line naming the file and the problem, never a traceback or a hang, and nothing written.
A full disk (a file-size limit) fails in one line and leaves the previous export as it was; an
export interrupted (SIGINT) or killed (SIGKILL) half-way leaves either the previous export whole
or graphs without a sidecar (which does not look finished), and the next export removes what
the kill left. A model whose graph cannot be exported: ``tests/test_export.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mmkit.engine.checkpoint import save_checkpoint
from mmkit.spec import CheckpointSpec
from mmkit.tasks import build_model
from tests.disks import ROOT, read_only, run_limited
from tests.forked_cli import ForkedCli
from tests.test_bad_inputs import ERROR_LINE, TIMEOUT, _audio_checkpoint_config

MODEL, CONFIG = "model.safetensors", "config.json"


@dataclass(frozen=True)
class Case:
    """``mmkit export --checkpoint {ckpt} --out {out}`` exits 1 with ``stderr`` (a pattern)."""

    id: str
    ckpt: str  # a folder name the ``damaged`` fixture made, or "good"
    out: str  # relative to the test's tmp_path, or absolute
    stderr: str


CASES = [
    Case("model-missing", "no_model", "m.pt", r"no_model is incomplete: model\.safetensors is"),
    Case("model-folder", "dir_model", "m.pt", r"incomplete: model\.safetensors is a directory"),
    Case("model-garbage", "garbled_model", "m.pt", r"model\.safetensors is not a safetensors file"),
    Case("model-empty", "empty_model", "m.pt", r"empty_model/model\.safetensors is not a"),
    Case("model-cut-in-header", "header_cut_model", "m.pt", r"model\.safetensors: corrupt header"),
    Case(
        "model-cut-in-data",
        "data_cut_model",
        "m.pt",
        r"data_cut_model/model\.safetensors: cannot read it \(.*not fully covered",
    ),
    Case("config-missing", "no_config", "m.pt", r"no_config is incomplete: config\.json is"),
    Case("config-garbage", "garbled_config", "m.pt", r"garbled_config/config\.json: invalid JSON"),
    Case("config-cut", "cut_config", "m.pt", r"cut_config/config\.json: invalid JSON \(Unter"),
    Case("config-empty", "empty_config", "m.pt", r"empty_config/config\.json: invalid JSON"),
    Case("out-is-a-folder", "good", "folder.pt", r"--out .*folder\.pt is a directory"),
    Case(
        "out-under-a-file",
        "good",
        "a_file/m.pt",
        r"cannot write to .*a_file: a part of the path is a file, not a folder",
    ),
]  # fmt: skip


def _cut(n: int):
    return lambda d: (d / MODEL).write_bytes((d / MODEL).read_bytes()[:n])


DAMAGE = {
    "no_model": lambda d: (d / MODEL).unlink(),
    "dir_model": lambda d: ((d / MODEL).unlink(), (d / MODEL).mkdir()),
    "garbled_model": lambda d: (d / MODEL).write_bytes(os.urandom(5000)),
    "empty_model": lambda d: (d / MODEL).write_bytes(b""),
    "header_cut_model": _cut(20),
    "data_cut_model": _cut(3000),
    "no_config": lambda d: (d / CONFIG).unlink(),
    "garbled_config": lambda d: (d / CONFIG).write_bytes(bytes(range(128, 256)) * 4),
    "cut_config": lambda d: (d / CONFIG).write_bytes((d / CONFIG).read_bytes()[:100]),
    "empty_config": lambda d: (d / CONFIG).write_bytes(b""),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny audio checkpoint (``good``) and a damaged copy for each :data:`DAMAGE`."""
    root = tmp_path_factory.mktemp("bad_export")
    torch.manual_seed(0)
    spec = CheckpointSpec.from_json(_audio_checkpoint_config())
    out = {"good": save_checkpoint(root / "good", build_model(spec), spec)}
    for name, damage in DAMAGE.items():
        out[name] = Path(shutil.copytree(out["good"], root / name))
        damage(out[name])
    return out


def export_args(ckpt: Path, out: Path, fmt: str = "torchscript") -> list[str]:
    return ["export", "--checkpoint", str(ckpt), "--format", fmt, "--out", str(out)]


def assert_one_error_line(proc: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert proc.returncode != 124, f"hung for {TIMEOUT:g} s"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and ERROR_LINE.match(proc.stderr), proc.stderr
    assert re.search(pattern, proc.stderr), proc.stderr
    assert not proc.stdout, proc.stdout


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_export(case: Case, checkpoints: dict[str, Path], cli: ForkedCli, tmp_path: Path):
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "a_file").write_text("not a folder\n")
    before = sorted(tmp_path.rglob("*"))
    proc = cli.run(export_args(checkpoints[case.ckpt], tmp_path / case.out), timeout=TIMEOUT)
    assert_one_error_line(proc, case.stderr)
    assert sorted(tmp_path.rglob("*")) == before  # no graph, no sidecar, no partial file


def test_read_only_output_folder(checkpoints: dict[str, Path], cli: ForkedCli, tmp_path: Path):
    out = tmp_path / "exports"
    out.mkdir()
    with read_only(out):
        proc = cli.run(export_args(checkpoints["good"], out / "m.pt"), timeout=TIMEOUT)
    assert_one_error_line(proc, r"cannot write to .*exports: (read-only file system|permission)")
    assert not any(out.iterdir())


@pytest.fixture
def exported(checkpoints: dict[str, Path], cli: ForkedCli, tmp_path: Path) -> dict[str, bytes]:
    """A finished export in ``tmp_path/export`` (graph + sidecar), its files' bytes by name."""
    out = tmp_path / "export" / "model.pt"
    proc = cli.run(export_args(checkpoints["good"], out), timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return {p.name: p.read_bytes() for p in out.parent.iterdir()}


def folder(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir()}


def test_full_disk_keeps_the_previous_export(
    checkpoints: dict[str, Path], exported: dict[str, bytes], tmp_path: Path
) -> None:
    """Under ``ulimit -f`` (smaller than the graph) export fails in one line, and the previous
    graph and sidecar are byte for byte what they were, with nothing beside them."""
    assert sorted(exported) == ["model.json", "model.pt"]
    limit = len(exported["model.pt"]) // 2
    proc = run_limited(export_args(checkpoints["good"], tmp_path / "export" / "model.pt"), limit)
    assert_one_error_line(proc, r"cannot write the export .*export/model\.pt: file too large")
    assert folder(tmp_path / "export") == exported


KILLER = r"""
import os, signal, sys
point, sig, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
import mmkit.engine.export as engine

if point == "graph-written":  # the new graph complete in its temporary file
    write = engine._write_torchscript
    def write_then_signal(module, example, path):
        run = write(module, example, path)
        os.kill(os.getpid(), sig)
        return run
    engine._write_torchscript = write_then_signal
else:  # "graph-renamed": the new graph in place, its sidecar not yet written
    replace = os.replace
    def replace_then_signal(src, dst):
        replace(src, dst)
        if os.path.basename(dst) == "model.pt":
            os.kill(os.getpid(), sig)
    os.replace = replace_then_signal

from mmkit.cli.entry import run
run(args)
"""


def _export_with_signal(args: list[str], point: str, sig: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, MMKIT_DEBUG="0")
    return subprocess.run([sys.executable, "-c", KILLER, point, str(sig), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


def _retrained(checkpoints: dict[str, Path], tmp_path: Path) -> Path:
    """Another checkpoint of the same model (other weights): its graph differs from the
    exported one."""
    torch.manual_seed(1)
    spec = CheckpointSpec.from_json(_audio_checkpoint_config())
    return save_checkpoint(tmp_path / "other", build_model(spec), spec)


@pytest.mark.parametrize(
    ("point", "sig"),
    [
        ("graph-written", signal.SIGINT),
        ("graph-renamed", signal.SIGKILL),
        pytest.param("graph-written", signal.SIGKILL, marks=pytest.mark.slow),
        pytest.param("graph-renamed", signal.SIGINT, marks=pytest.mark.slow),
    ],
)
def test_an_interrupted_export_never_looks_finished(
    point: str,
    sig: int,
    checkpoints: dict[str, Path],
    exported: dict[str, bytes],
    cli: ForkedCli,
    tmp_path: Path,
) -> None:
    """Ctrl-C exits 130 and cleans up; SIGKILL leaves temporary files. Either way the export
    folder holds the previous export whole, or new graphs with no sidecar; the graph under the
    final name is always a complete file, and the next export removes the leftovers."""
    out = tmp_path / "export" / "model.pt"
    proc = _export_with_signal(export_args(_retrained(checkpoints, tmp_path), out), point, sig)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, proc.stderr
        assert proc.stderr == "interrupted\n", proc.stderr
    else:
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    now = folder(out.parent)
    final = {name: data for name, data in now.items() if not name.startswith(".")}
    if "model.json" in final:
        assert final == exported  # the sidecar is there: so is the graph it describes
    else:
        assert sorted(final) == ["model.pt"] and final["model.pt"] != exported["model.pt"]
    torch.jit.load(str(out))  # whatever sits under the final name is a whole graph
    if sig == signal.SIGINT:
        assert now == final  # Ctrl-C: nothing left behind
    again = cli.run(export_args(checkpoints["good"], out), timeout=TIMEOUT)
    assert again.returncode == 0, again.stderr
    assert folder(out.parent) == exported  # the leftovers of the kill are gone
