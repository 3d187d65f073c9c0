"""Measuring tools of the benchmark: step rates, a busy neighbour, child processes' peak memory.

Every rate is items per second over wall time. The machine may be shared, so rates that are
compared are measured close together (the ceiling between the epochs it is compared with) and
summarised by their median.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import mmkit

BUSY_LOOP = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (the CPU runs eagerly)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def step_rate(step: Callable[[], int], steps: int, device: torch.device) -> float:
    """Items per second of ``steps`` calls of ``step`` (which returns its item count)."""
    sync(device)
    start, done = time.perf_counter(), 0
    for _ in range(steps):
        done += step()
    sync(device)
    return done / (time.perf_counter() - start)


def training_step(
    model: torch.nn.Module,
    loss: Callable[[torch.nn.Module, Any], torch.Tensor],
    batch: Any,
    *,
    lr: float = 1e-4,
) -> Callable[[], int]:
    """One AdamW step of ``model`` on the fixed ``batch`` per call (returns the batch size)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    size = len(batch[0]) if isinstance(batch, tuple | list) else len(batch)
    model.train()

    def step() -> int:
        value = loss(model, batch)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        return size

    return step


@contextlib.contextmanager
def busy_neighbour(seconds: float = 3600.0) -> Iterator[subprocess.Popen]:
    """One other process spinning on a core (a pure-Python loop) while the block runs."""
    proc = subprocess.Popen(
        [sys.executable, "-c", BUSY_LOOP.format(seconds=seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.2)  # let it start spinning
        yield proc
    finally:
        proc.kill()
        proc.wait()


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child Python that must import this same mmkit."""
    env = dict(os.environ, **extra)
    root = str(Path(mmkit.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


@dataclass(frozen=True)
class ChildRun:
    seconds: float  # wall time of the whole process
    peak_rss_mb: float  # its peak resident memory (ru_maxrss)
    stdout: str
    stderr: str


# Runs the command and writes its wall time and rusage to a file. The command is started from
# this small process, not from the benchmark: Linux keeps the RSS high-water mark of the memory
# a child was forked with across exec, so a child of the (large) benchmark process would report
# at least the benchmark's own size.
LAUNCHER = """
import json, os, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
proc = subprocess.Popen(cmd)
_, status, usage = os.wait4(proc.pid, 0)
seconds = time.perf_counter() - start
code = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    json.dump({"seconds": seconds, "maxrss_kb": usage.ru_maxrss, "code": code}, f)
"""


def run_child(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> ChildRun:
    """Run ``cmd`` to completion: its wall time and peak RSS (``wait4`` in a small launcher
    process, see :data:`LAUNCHER`). A failing child raises ``RuntimeError`` with the end of
    its stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.json"
        proc = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, str(stats), *cmd],
            capture_output=True,
            env=env if env is not None else child_env(),
            cwd=cwd,
            check=False,
        )
        result = json.loads(stats.read_text()) if stats.is_file() else {"code": proc.returncode}
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    if result["code"] != 0:
        tail = " | ".join(err.strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(cmd[:5])} ... exited {result['code']}: {tail}")
    return ChildRun(result["seconds"], result["maxrss_kb"] / 1024, out, err)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs``."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def load_average() -> list[float]:
    """The 1/5/15-minute load averages, rounded."""
    return [round(v, 2) for v in os.getloadavg()]
