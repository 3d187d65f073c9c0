"""The run directory survives anything: SIGKILL at any point, two jobs on one --out, signals
during start-up.

Kills are injected by a small driver that wraps library functions in the training subprocess
(``os.replace``, ``save_file``, the optimizer step, evaluation) and SIGKILLs the process at the
n-th call: a real kill at a known point, with no test hook in the library.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mmkit
from mmkit.engine.state import TrainerState
from mmkit.io.atomic import hold_lock, partial_dir_for, recover_dir, replace_dir, temp_dir_for
from tests.conftest import run_cli
from tests.forked_cli import ForkedCli

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, STEPS = 3, 2

DRIVER = r"""
import os, signal, sys
point, nth, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
seen = {}

def hit(key):
    seen[key] = seen.get(key, 0) + 1
    if key == point and seen[key] == nth:
        os.kill(os.getpid(), signal.SIGKILL)

import torch
import mmkit.engine.checkpoint as ckpt
import mmkit.io.atomic as atomic
import mmkit.tasks.classify as classify

clip = torch.nn.utils.clip_grad_norm_
def clip_and_count(*a, **k):
    hit("step")
    return clip(*a, **k)
torch.nn.utils.clip_grad_norm_ = clip_and_count

evaluate = classify.ClassificationTask.evaluate
def evaluate_and_count(self, *a, **k):
    hit("eval")
    return evaluate(self, *a, **k)
classify.ClassificationTask.evaluate = evaluate_and_count

save_file = ckpt.save_file
def save_and_count(tensors, filename, *a, **k):
    folder = os.path.basename(os.path.dirname(filename))
    hit("best-write" if folder.startswith(".best.") else "last-write")
    return save_file(tensors, filename, *a, **k)
ckpt.save_file = save_and_count

replace = os.replace
def replace_and_count(src, dst):
    replace(src, dst)
    if os.path.basename(dst) == ".last.old":
        hit("between-renames")
atomic.os.replace = replace_and_count

from mmkit.cli.entry import run
run(args)
"""


TINY = ("--backbone", "audio_cnn_test", "--n-mels", "32", "--epochs", str(EPOCHS), "--patience",
        "0", "--batch-size", "8", "--set", f"max_steps_per_epoch={STEPS}", "--json")  # fmt: skip


def _args(store: Path, out: Path, *extra: str) -> list[str]:
    """A tiny run: 3 epochs of 2 steps."""
    return ["audio", "train", "--dataset", str(store), "--out", str(out), *TINY, *extra]


def _train(store: Path, out: Path, *extra: str, point: str = "none", nth: int = 0):
    args = _args(store, out, *extra)
    env = dict(os.environ, MMKIT_DEBUG="0")
    return subprocess.run([sys.executable, "-c", DRIVER, point, str(nth), *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, speech_sources: dict[str, Path]) -> Path:
    from mmkit.pipelines import audio

    out = tmp_path_factory.mktemp("run_dir") / "store"
    return audio.prepare(audio.AudioConfig(dataset=str(speech_sources["csv"])), out=out).path


@pytest.fixture(scope="module")
def reference(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run_dir") / "reference"
    proc = _train(store, out)
    assert proc.returncode == 0, proc.stderr
    return out


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("point", "nth"),
    [
        ("step", STEPS + 1),  # inside the first step of epoch 2
        ("eval", 2),  # during epoch 2's validation
        ("best-write", 1),  # while the first best/ is written (no last/ yet)
        ("last-write", 3),  # while epoch 2's last/ is written
        ("between-renames", 1),  # after last -> .last.old, before the new last/ is in place
    ],
)
def test_sigkill_at_any_point_then_resume(
    point: str, nth: int, store: Path, reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    killed = _train(store, run, point=point, nth=nth)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    for name in ("best", "last"):  # whatever exists loads, even before any recovery
        if (run / name).exists() or (run / f".{name}.old").exists():
            loaded = mmkit.load_checkpoint(str(run / name if (run / name).exists() else run))
            assert loaded.spec.task == "classify"
    resumable = (run / "last").exists() or (run / ".last.old").exists()
    again = _train(store, run, *(["--resume"] if resumable else []))
    assert again.returncode == 0, again.stderr
    assert [r["epoch"] for r in _rows(run)] == list(range(1, EPOCHS + 1))
    assert not list(run.glob(".*.tmp-*")) and not list(run.glob(".*.old"))
    state = json.loads((run / "last" / "trainer_state.json").read_text())
    assert state["global_step"] == EPOCHS * STEPS
    ours, theirs = (load_file(str(r / "last" / "model.safetensors")) for r in (run, reference))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # bit-exact despite the kill


def test_second_job_on_the_same_out_is_refused(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = dict(os.environ, MMKIT_DEBUG="0")
    args = ["audio", "train", "--dataset", str(store), "--out", str(run), "--backbone",
            "audio_cnn_test", "--epochs", "200", "--patience", "0", "--json"]  # fmt: skip
    first = subprocess.Popen(
        [sys.executable, "-m", "mmkit", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / ".lock").exists() or not (run / "config.yaml").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        second = run_cli(*args, timeout=120, cwd=ROOT)
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1
        assert f"is in use by pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130  # interrupted cleanly, last/ saved
    assert (run / "last").is_dir()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("delay", [1.0, 2.5])
def test_signal_during_start_up_exits_130_quietly(
    sig: signal.Signals, delay: float, store: Path, tmp_path: Path
) -> None:
    env = dict(os.environ, MMKIT_DEBUG="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmkit", "audio", "train", "--dataset", str(store), "--out",
         str(tmp_path / "run"), "--backbone", "audio_cnn_test", "--json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(delay)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr and stderr.count("\n") <= 1


def test_replace_dir_recovers_a_swap_killed_between_renames(tmp_path: Path) -> None:
    dst = tmp_path / "last"
    for version in ("1", "2"):
        tmp = temp_dir_for(dst)
        (tmp / "v").write_text(version)
        replace_dir(tmp, dst)
    # simulate the kill: dst parked as .last.old, the new copy still in its temp dir
    os.replace(dst, tmp_path / ".last.old")
    half = temp_dir_for(dst)
    (half / "v").write_text("3-incomplete")
    assert recover_dir(dst) is True
    assert (dst / "v").read_text() == "2" and not half.exists()
    tmp = temp_dir_for(dst)
    (tmp / "v").write_text("3")
    os.replace(dst, tmp_path / ".last.old")  # killed again between the renames
    replace_dir(tmp, dst)  # the next swap must not delete the parked copy first
    assert (dst / "v").read_text() == "3" and not (tmp_path / ".last.old").exists()


def _assert_loadable(run: Path) -> None:
    """What a kill left: each checkpoint there (or parked mid-swap) loads, and last/'s trainer
    state reads."""
    for name in ("best", "last"):
        where = run / name if (run / name).exists() else run / f".{name}.old"
        if where.exists():
            assert mmkit.load_checkpoint(str(where)).spec.task == "classify", where
    for where in (run / "last", run / ".last.old"):
        if where.exists():
            TrainerState.read(where / "trainer_state.json")


def test_sigkill_at_seeded_random_moments_never_breaks_the_run(
    store: Path, cli: ForkedCli, tmp_path: Path
) -> None:
    """Six SIGKILLs at seeded random moments of one run and of its resumes (start-up, steps,
    validation, checkpoint writes: wherever the clock falls): after each, whatever is in the run
    directory loads, and the next start resumes it (or starts over when no last/ was saved);
    the run that finally completes holds the weights of one never killed, bit for bit."""
    start = time.monotonic()
    whole = cli.run(_args(store, tmp_path / "reference"), timeout=300)
    span = time.monotonic() - start
    assert whole.returncode == 0, whole.stderr
    rng = random.Random(19)
    run, kills, finished = tmp_path / "run", 0, 0
    for _ in range(14):  # bounded: each run is killed, or finishes and a new one starts
        resume = (run / "last").exists() or (run / ".last.old").exists()
        proc = cli.run(_args(store, run, *(["--resume"] if resume else [])),
                       timeout=rng.uniform(0.05, 1.0) * span)  # fmt: skip
        if proc.returncode == 0:
            finished += 1
            run = tmp_path / f"run{finished}"
            continue
        assert proc.returncode == 124, proc.stderr  # killed by the clock, not failed
        kills += 1
        _assert_loadable(run)
        if kills == 6:
            break
    assert kills == 6
    resume = (run / "last").exists() or (run / ".last.old").exists()
    done = cli.run(_args(store, run, *(["--resume"] if resume else [])), timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["epochs"] == EPOCHS
    assert [r["epoch"] for r in _rows(run)] == list(range(1, EPOCHS + 1))
    assert not list(run.glob(".*.tmp-*")) and not list(run.glob(".*.old"))
    ours, theirs = (
        load_file(str(r / "last" / "model.safetensors")) for r in (run, tmp_path / "reference")
    )
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_stale_lock_is_taken_over(store: Path, cli: ForkedCli, tmp_path: Path) -> None:
    """A ``.lock`` left by a process that died (it names a pid that no longer runs, and no
    one holds the flock): the next job takes it over and names itself in it."""
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(f"pid {dead.pid} on {socket.gethostname()}")
    proc = cli.run(_args(store, run), timeout=300)
    assert proc.returncode == 0, proc.stderr
    holder = (run / ".lock").read_text()
    assert holder.startswith("pid ") and holder != f"pid {dead.pid} on {socket.gethostname()}"
    assert (run / "last").is_dir() and (run / "best").is_dir()


def test_a_live_lock_is_refused(store: Path, cli: ForkedCli, tmp_path: Path) -> None:
    """While another process holds the flock, a job on the same --out is one line naming it,
    and writes nothing."""
    run = tmp_path / "run"
    run.mkdir()
    fd = hold_lock(run / ".lock", "test")
    try:
        proc = cli.run(_args(store, run), timeout=120)
    finally:
        os.close(fd)
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert re.search(rf"^error: .*run is in use by pid {os.getpid()} on ", proc.stderr)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_a_stale_prepare_lock_is_taken_over(speech_sources: dict[str, Path], cli: ForkedCli,
                                            tmp_path: Path) -> None:  # fmt: skip
    """The same for ``prepare``'s lock (``.store.partial/lock``): a live holder is refused in one
    line, and its file, once the holder is gone, is taken over."""
    out = tmp_path / "store"
    partial = partial_dir_for(out)
    partial.mkdir()
    fd = hold_lock(partial / "lock", "test")
    args = ["audio", "prepare", "--dataset", str(speech_sources["csv"]), "--out", str(out)]
    try:
        refused = cli.run(args, timeout=120)
    finally:
        os.close(fd)  # as the kernel does when the holder dies; its file stays
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert re.search(rf"store \(being prepared\) is in use by pid {os.getpid()}", refused.stderr)
    assert not out.exists()
    done = cli.run([*args, "--json"], timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_items"] > 0 and not partial.exists()
