"""``prepare`` and ``train`` on a disk that fills up and into a folder that cannot be written
(issue 19).

A full disk is a file-size limit (``ulimit -f``: EFBIG, any machine) or a small tmpfs (ENOSPC,
where this process may mount one); a read-only folder is :func:`tests.disks.read_only`. Each is
exit 1 and one ``error:`` line naming what could not be written; the store or checkpoints there
before are byte for byte what they were, nothing that looks like a store or a checkpoint is
left half-written, and once there is room the same command finishes (a prepare continues from
the items it had decoded, which it keeps in its hidden ``.<out>.partial`` folder). DataLoader
workers that cannot hand batches over through a full ``/dev/shm`` are one line too.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import mmkit
from mmkit.engine.state import TrainerState
from tests.disks import read_only, run_limited, small_tmpfs
from tests.forked_cli import ForkedCli
from tests.test_bad_export import assert_one_error_line
from tests.test_bad_inputs import TIMEOUT
from tests.test_prepare_resume import _files as snapshot
from tests.test_sources import _wav_bytes

FULL = r"(file too large|no space left on device)"
TRAIN = ("--backbone", "audio_cnn_test", "--n-mels", "32", "--batch-size", "4", "--num-workers",
         "0", "--set", "max_steps_per_epoch=2", "--device", "cpu", "--json")  # fmt: skip


@pytest.fixture(scope="module")
def words(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Manifests of 4 and of 12 one-second clips (a store of about 128 KB and 384 KB)."""
    root = tmp_path_factory.mktemp("bad_disks")
    for i in range(12):
        (root / f"w{i}.wav").write_bytes(_wav_bytes(i, seconds=1.0))
    out = {}
    for name, n in (("small", 4), ("big", 12)):
        out[name] = root / f"{name}.csv"
        rows = "".join(f"w{i}.wav,{'yes' if i % 2 else 'no'}\n" for i in range(n))
        out[name].write_text("path,label\n" + rows)
    return out


def prepare_args(manifest: Path, out: Path) -> list[str]:
    return ["audio", "prepare", "--dataset", str(manifest), "--out", str(out), "--json"]


def train_args(store: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return ["audio", "train", "--dataset", str(store), "--out", str(out), "--epochs", str(epochs),
            *TRAIN, *extra]  # fmt: skip


def ok(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@contextlib.contextmanager
def full_disk(kind: str, where: Path) -> Iterator[Path]:
    """``where`` as a folder on a disk of 640 KiB (``tmpfs``), or an ordinary one whose
    filling up :func:`run_full` imitates with a file-size limit (``ulimit``)."""
    if kind == "tmpfs":
        with small_tmpfs(where, 640):
            yield where
    else:
        where.mkdir()
        yield where


def fill(kind: str, folder: Path, leave: int) -> None:
    """On the tmpfs: a filler file that leaves ``leave`` bytes free."""
    if kind == "tmpfs":
        stat = os.statvfs(folder)
        (folder / "filler").write_bytes(b"\0" * max(stat.f_bavail * stat.f_frsize - leave, 0))


def run_full(
    kind: str, cli: ForkedCli, args: list[str], limit: int
) -> subprocess.CompletedProcess[str]:
    """``mmkit ARGS`` on the full disk: with files limited to ``limit`` bytes (a fresh
    process), or forked on the tmpfs."""
    if kind == "ulimit":
        return run_limited(args, limit)
    return cli.run(args, timeout=TIMEOUT)


# -- prepare ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "room"),
    [("ulimit", 300_000), ("tmpfs", 300_000), ("tmpfs", 100_000)],
    ids=["ulimit-after-a-chunk", "tmpfs-after-a-chunk", "tmpfs-before-a-chunk"],
)
def test_prepare_on_a_full_disk_keeps_the_previous_store(
    kind: str, room: int, words: dict[str, Path], cli: ForkedCli, tmp_path: Path
) -> None:
    """The 12 items of the big store do not fit in ``room`` bytes: one line, and the previous
    store as it was. The items of a chunk (8 here) that was committed before the disk filled up
    wait in ``.store.partial``, and the next run decodes only the rest; with no chunk, nothing
    is left."""
    with full_disk(kind, tmp_path / "disk") as disk:
        out = disk / "store"
        assert ok(cli.run(prepare_args(words["small"], out)))["num_items"] == 4
        before = snapshot(out)
        fill(kind, disk, leave=room)
        proc = run_full(kind, cli, prepare_args(words["big"], out), limit=room)
        kept = room > 8 * 32_000
        assert_one_error_line(
            proc, rf"^error: cannot write the prepared store {out}: {FULL}"
            + (r"; \.store\.partial keeps what was decoded for the next run$" if kept else "$"),
        )  # fmt: skip
        assert snapshot(out) == before
        left = sorted(p.name for p in disk.iterdir() if p.name != "filler")
        assert left == [".store.partial", "store"] if kept else ["store"]
        (disk / "filler").unlink(missing_ok=True)
        done = cli.run(prepare_args(words["big"], out), timeout=TIMEOUT)
        assert ok(done)["num_items"] == 12 and not (disk / ".store.partial").exists()
        assert ("continuing an interrupted prepare: 8 of 12" in done.stderr) == kept


def test_prepare_into_a_read_only_folder(
    words: dict[str, Path], cli: ForkedCli, tmp_path: Path
) -> None:
    folder = tmp_path / "stores"
    folder.mkdir()
    out = folder / "store"
    ok(cli.run(prepare_args(words["small"], out), timeout=TIMEOUT))
    before = snapshot(folder)
    with read_only(folder):
        proc = cli.run(prepare_args(words["big"], out), timeout=TIMEOUT)
        assert_one_error_line(
            proc, rf"^error: cannot write the prepared store {out}: "
            r"(read-only file system|permission denied)$",
        )  # fmt: skip
    assert snapshot(folder) == before


# -- train --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(words: dict[str, Path], cli: ForkedCli, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bad_disks_store") / "store"
    ok(cli.run(prepare_args(words["big"], out), timeout=TIMEOUT))
    return out


def assert_resumable(run: Path) -> None:
    """``best/`` and ``last/`` load, ``last/`` has its trainer state, no temporary folder is
    left beside them."""
    for name in ("best", "last"):
        assert mmkit.load_checkpoint(str(run / name)).spec.task == "classify"
    TrainerState.read(run / "last" / "trainer_state.json")
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock"]


@pytest.mark.parametrize("kind", ["ulimit", "tmpfs"])
def test_train_on_a_full_disk_keeps_the_last_checkpoint(
    kind: str, store: Path, cli: ForkedCli, tmp_path: Path
) -> None:
    """Epoch 1 is saved; epoch 2 cannot be: one line, and the run is as epoch 1 left it (its
    ``metrics.jsonl`` may hold epoch 2's row, which the resume rewrites); with room again,
    ``--resume`` finishes it."""
    with full_disk(kind, tmp_path / "disk") as disk:
        run = disk / "run"
        assert ok(cli.run(train_args(store, run, 1), timeout=TIMEOUT))["epochs"] == 1
        before = {k: v for k, v in snapshot(run).items() if k.startswith(("best/", "last/"))}
        fill(kind, disk, leave=16_000)
        proc = run_full(kind, cli, train_args(store, run, 2, "--resume"), limit=16_000)
        assert_one_error_line(proc, rf"^error: cannot write .*{run}.*: {FULL}$")
        after = {k: v for k, v in snapshot(run).items() if k.startswith(("best/", "last/"))}
        assert after == before
        assert_resumable(run)
        (disk / "filler").unlink(missing_ok=True)
        done = ok(cli.run(train_args(store, run, 2, "--resume"), timeout=TIMEOUT))
        assert done["epochs"] == 2
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2]


def test_train_into_a_read_only_run_directory(store: Path, cli: ForkedCli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(cli.run(train_args(store, run, 1), timeout=TIMEOUT))
    before = snapshot(run)
    with read_only(run):
        proc = cli.run(train_args(store, run, 2, "--resume"), timeout=TIMEOUT)
        assert_one_error_line(
            proc, rf"^error: cannot write to the run directory {run}: "
            r"(read-only file system|permission denied)$",
        )  # fmt: skip
    assert snapshot(run) == before
    assert_resumable(run)


def test_loader_workers_on_a_full_shared_memory_are_one_line(store: Path, tmp_path: Path) -> None:
    """A worker's batch goes through a file in /dev/shm; under a file-size limit (as on a full
    /dev/shm, docker's 64 MB) torch cannot write it: one line saying what to do."""
    args = train_args(store, tmp_path / "run", 1, "--num-workers", "1")
    proc = run_limited(args, 20_000)
    assert_one_error_line(
        proc, r"^error: the DataLoader workers cannot pass batches through shared memory: "
        r"file too large; make room in /dev/shm \(docker: --shm-size\) or pass --num-workers 0$",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("unable to write to file </torch_23_3417_0>: No space left on device (28)",
         "no space left on device"),
        ("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback ...\n"
         "RuntimeError: unable to open shared memory object </torch_1_2_3> in read-write mode: "
         "Too many open files (24)", "too many open files"),
        ("DataLoader worker (pid 77) is killed by signal: Bus error. It is possible that "
         "dataloader's workers are out of shared memory. Please try to raise your shared memory "
         "limit.", "a worker was killed by SIGBUS (shared memory full)"),
        ("unable to open file <model.bin>: No such file (2)", None),
    ],
)  # fmt: skip
def test_shared_memory_reasons(message: str, reason: str | None) -> None:
    from mmkit.io.files import shared_memory_reason

    assert shared_memory_reason(RuntimeError(message)) == reason
    assert shared_memory_reason(OSError(message)) is None
