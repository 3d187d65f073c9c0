"""An interrupted ``prepare`` continues: decoded work is committed in chunks, a rerun after
SIGKILL decodes only the records no chunk holds, and the store it ends with is the store an
uninterrupted run makes, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mmkit.data.store import MANIFEST, Store
from mmkit.data.store_writer import StoreWriter
from mmkit.errors import UserInputError
from mmkit.io.atomic import partial_dir_for
from mmkit.pipelines.bench import scale_data as sd
from tests.conftest import run_cli

# Loaded through MMKIT_PLUGINS into the prepare process: logs every decoded source to
# $DECODE_LOG and, when $DECODE_BLOCK_AT is set, hangs in that decode call (1-based) for good,
# so the process sits between its committed chunks and the rest until it is killed.
GATE = """
import os, threading
from mmkit.pipelines.audio import AudioModality

_decode, _calls, _lock = AudioModality.decode, [0], threading.Lock()

def decode(self, source, params):
    with _lock:
        _calls[0] += 1
        n = _calls[0]
        with open(os.environ["DECODE_LOG"], "a") as f:
            f.write(f"{source}\\n")
    if n == int(os.environ.get("DECODE_BLOCK_AT", "0")):
        threading.Event().wait()
    return _decode(self, source, params)

AudioModality.decode = decode
"""


def _wait_for(proc: subprocess.Popen, ready: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll until ``ready()`` while ``proc`` runs; fail after ``seconds`` or if it exits."""
    deadline = time.monotonic() + seconds
    while not ready():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, f"no {what} in {seconds} s"
        time.sleep(0.05)


def _writer(out: Path, key: str | None = "fp") -> StoreWriter:
    return StoreWriter(
        out, modality="audio", dtype="int16", item_shape=(), params={"sample_rate": 8}, resume=key
    )


def _items(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.integers(-999, 999, size=3 + i % 4, dtype=np.int16) for i in range(n)]


def _feed(writer: StoreWriter, items: list[np.ndarray], start: int, stop: int) -> None:
    for i in range(start, stop):
        if i % 5 == 4:
            writer.skip(f"{i}.wav", "unreadable")
        else:
            writer.add(items[i], name=f"{i}.wav", label="x", split="train", group="")


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_a_writer_continues_after_its_last_chunk(tmp_path):
    items = _items(12)
    fresh = _writer(tmp_path / "fresh", key=None)
    _feed(fresh, items, 0, 12)
    fresh.commit(["x"], fingerprint="fp")

    first = _writer(tmp_path / "store")
    _feed(first, items, 0, 7)
    first.checkpoint()
    _feed(first, items, 7, 9)  # added after the last chunk: lost with the process
    first._data.flush()
    with pytest.raises(UserInputError, match=r"being prepared.*is in use by pid"):
        _writer(tmp_path / "store")  # one writer at a time
    first.abort()  # what a kill leaves: the chunks, and data past them

    again = _writer(tmp_path / "store")
    assert again.records == 7 and again.kept == [0, 1, 2, 3, 5, 6]
    assert [i.name for i in again.items] == ["0.wav", "1.wav", "2.wav", "3.wav", "5.wav", "6.wav"]
    _feed(again, items, 7, 12)
    again.commit(["x"], fingerprint="fp")
    assert _files(tmp_path / "store") == _files(tmp_path / "fresh")
    assert not partial_dir_for(tmp_path / "store").exists()
    assert Store(tmp_path / "store").skipped == [
        {"name": "4.wav", "reason": "unreadable"},
        {"name": "9.wav", "reason": "unreadable"},
    ]


def test_a_writer_for_another_source_starts_over(tmp_path):
    items = _items(6)
    first = _writer(tmp_path / "store", key="old")
    _feed(first, items, 0, 6)
    first.checkpoint()
    first.abort()
    other = _writer(tmp_path / "store", key="new")
    assert other.records == 0 and other.items == []
    other.commit(["x"])
    assert len(Store(tmp_path / "store")) == 0
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["data.bin", MANIFEST]


def test_prepare_killed_half_way_decodes_only_the_rest(tmp_path):
    data = sd.generate("speech_commands", "1/2048", tmp_path / "sc")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "zz_decode_gate.py").write_text(GATE)
    env = {
        **os.environ,
        "MMKIT_DEBUG": "0",
        "MMKIT_PLUGINS": "zz_decode_gate",
        "PYTHONPATH": os.pathsep.join(
            [str(plugins), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    out = tmp_path / "store"
    prepare = ["audio", "prepare", "--dataset", str(data.path), "--out", str(out), "--json"]
    partial = partial_dir_for(out)
    # 52 records, chunks of 8: the 27th decode hangs, so chunks 0-2 (24 records) get committed
    # (one worker: the decoding, and the gate's count, stay in the process)
    killed_log = tmp_path / "killed.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmkit", *prepare, "--workers", "1"],
        env={**env, "DECODE_LOG": str(killed_log), "DECODE_BLOCK_AT": "27"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(proc, lambda: (partial / "chunk-000002.json").is_file(), 300, "a chunk")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / MANIFEST).exists()
    chunks = [json.loads(c.read_text()) for c in sorted(partial.glob("chunk-*.json"))]
    assert [c["records"] for c in chunks] == [8, 16, 24]
    committed = {i["name"] for c in chunks for i in c["items"]}
    committed |= {s["name"] for c in chunks for s in c["skipped"]}
    assert len(committed) == 24

    rerun_log = tmp_path / "rerun.log"
    plugin_env = {k: env[k] for k in ("MMKIT_PLUGINS", "PYTHONPATH")}
    again = run_cli(*prepare, DECODE_LOG=str(rerun_log), **plugin_env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["num_items"] + len(summary["skipped"]) == 52
    assert (
        "continuing an interrupted prepare: 24 of 52 files were decoded before, "
        "decoding the other 28" in again.stderr
    )
    decoded = [
        Path(line).relative_to(data.path).as_posix() for line in rerun_log.read_text().split()
    ]
    assert len(decoded) == 28 and not set(decoded) & committed  # the rest, each once
    assert len(set(decoded) | committed) == 52
    assert not partial.exists()

    fresh = run_cli("audio", "prepare", "--dataset", str(data.path), "--out", str(tmp_path / "f"))
    assert fresh.returncode == 0, fresh.stderr
    assert _files(out) == _files(tmp_path / "f")
    assert sorted(_files(out)) == ["data.bin", MANIFEST, "noise.npy"]


def _children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _running(pid: int) -> bool:
    """Alive, and not a zombie waiting for its new parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_decoding_processes_die_with_a_killed_prepare(tmp_path):
    """Audio decodes on a pool of processes; a SIGKILLed ``prepare`` takes them with it, even
    when they are stuck in a file (the gate blocks every decode after a process's second)."""
    data = sd.generate("speech_commands", "1/2048", tmp_path / "sc")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "zz_decode_gate.py").write_text(GATE)
    env = {**os.environ, "MMKIT_PLUGINS": "zz_decode_gate", "DECODE_LOG": str(tmp_path / "log"),
           "DECODE_BLOCK_AT": "3", "PYTHONPATH": os.pathsep.join(
               [str(plugins), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    args = ["audio", "prepare", "--dataset", str(data.path), "--out", str(tmp_path / "s")]
    proc = subprocess.Popen([sys.executable, "-m", "mmkit", *args, "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_for(proc, lambda: len(_children(proc.pid)) >= 2, 120, "decoding processes")
        children = _children(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while alive := {c for c in children if _running(c)}:
        assert time.monotonic() < deadline, f"decoding processes {alive} outlived prepare"
        time.sleep(0.05)


def _pool_sizes(monkeypatch) -> list[tuple[int, bool]]:
    """``(workers, processes)`` of every decoding pool ``prepare`` opens from now on, in this
    process (one worker decodes in the process and opens none)."""
    import mmkit.data.store_builder as sb

    sizes: list[tuple[int, bool]] = []
    real = sb._pool

    def pool(workers: int, processes: bool):
        sizes.append((workers, processes))
        return real(workers, processes)

    monkeypatch.setattr(sb, "_pool", pool)
    return sizes


def _main(*args: str) -> None:
    from mmkit.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    assert info.value.code == 0


def test_prepare_workers_sets_the_decoding_pool(tmp_path, monkeypatch):
    data = sd.generate("speech_commands", "1/2048", tmp_path / "sc")
    sizes = _pool_sizes(monkeypatch)
    prepare = ("audio", "prepare", "--dataset", str(data.path), "--json")
    _main(*prepare, "--out", str(tmp_path / "three"), "--workers", "3")
    _main(*prepare, "--out", str(tmp_path / "default"))
    _main(*prepare, "--out", str(tmp_path / "one"), "--workers", "1")
    train = ("audio", "train", "--dataset", str(data.path), "--out", str(tmp_path / "run"))
    _main(*train, "--backbone", "audio_cnn_test", "--epochs", "1", "--logger", "none",
          "--set", "max_steps_per_epoch=1", "--set", f"prepared={tmp_path / 'train'}",
          "--set", "prepare_workers=5", "--json")  # fmt: skip
    default = min(8, os.cpu_count() or 1)
    # audio decodes on a pool of processes; one worker decodes in the process, with no pool
    assert sizes == [(3, True), *([(default, True)] if default > 1 else []), (5, True)]
    assert _files(tmp_path / "three") == _files(tmp_path / "default")  # same store either way
    assert _files(tmp_path / "one") == _files(tmp_path / "default")


def test_a_writer_that_committed_no_chunk_leaves_nothing(tmp_path):
    """Stopped (a full disk, Ctrl-C) before its first chunk, a writer has nothing a later one
    could continue from: its partial directory goes, so the space it took is free again."""
    writer = _writer(tmp_path / "store")
    _feed(writer, _items(3), 0, 3)
    writer.abort()
    assert not partial_dir_for(tmp_path / "store").exists()
    assert list(tmp_path.iterdir()) == []
