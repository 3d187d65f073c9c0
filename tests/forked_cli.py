"""Run many ``mmkit`` commands cheaply: each in a child forked from one server process that
imported mmkit, torch and open_clip once.

A fresh ``python -m mmkit`` spends 3-6 s importing before it does anything; a forked child starts
with everything imported and costs only its own work. The child is a real process: its file
descriptors 1 and 2 are files (so C libraries' writes to stderr are caught too), it exits with
the CLI's exit code, and the server kills it (and its process group) when it runs past its
time, so a hang is a failed case, not a stuck test run. Environment variables that libraries read
at import time (``HF_HUB_OFFLINE``, ``HF_ENDPOINT``) cannot change in a fork: run such commands
as plain subprocesses (:func:`run_fresh`).

Server side: ``python -m tests.forked_cli`` reads one JSON request a line on stdin
(``{"args", "stdout", "stderr", "timeout"}``) and answers ``{"returncode", "timed_out",
"peak_rss_mb"}`` (the child's peak resident memory, the server's pages it started with included).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = (
    "mmkit.cli.main",
    "mmkit.pipelines.audio",
    "mmkit.pipelines.video",
    "mmkit.pipelines.mm",
    "open_clip",
    "datasets",
)


class ForkedCli:
    """Client of the fork server (start it once per test module; :meth:`close` at the end)."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.count = 0
        self.peak_rss_mb = 0.0  # of the last command (see the module's docstring)
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tests.forked_cli"],
            cwd=ROOT,
            env=dict(os.environ if env is None else env, MMKIT_DEBUG="0"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self.server.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"fork server did not start: {ready!r}")

    def run(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        self.count += 1
        out = self.workdir / f"cmd{self.count}.out"
        err = self.workdir / f"cmd{self.count}.err"
        request = {"args": args, "stdout": str(out), "stderr": str(err), "timeout": timeout}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        answer = json.loads(self.server.stdout.readline())
        code = 124 if answer["timed_out"] else answer["returncode"]
        self.peak_rss_mb = answer["peak_rss_mb"]
        return subprocess.CompletedProcess(
            ["mmkit", *args], code, out.read_text(errors="replace"), err.read_text(errors="replace")
        )

    def close(self) -> None:
        if self.server.poll() is None:
            self.server.stdin.close()
            self.server.wait(timeout=30)


def run_fresh(
    args: list[str], env: dict[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``python -m mmkit ARGS`` in a new interpreter with exactly ``env``."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "mmkit", *args],
            cwd=ROOT,
            env=dict(env, MMKIT_DEBUG="0"),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 124, exc.stdout or "", exc.stderr or "")


# -- server ------------------------------------------------------------------------------------
def _child(args: list[str], stdout: str, stderr: str) -> None:
    """In the forked child: point fds 0-2 at /dev/null and the two files, run the CLI, exit."""
    os.setpgid(0, 0)
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        new = os.open(path, flags, 0o644)
        os.dup2(new, fd)
        os.close(new)
    code = 0
    try:
        from mmkit.cli.main import main

        main(args)
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # an uncaught error: print it as the interpreter would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # nothing left to report to
                stream.flush()
    os._exit(code)


def _wait(pid: int, timeout: float) -> tuple[int, bool, float]:
    """The child's exit code, whether it ran past ``timeout`` (then it is killed) and its peak
    resident memory in MiB."""
    deadline = time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False, usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return os.waitstatus_to_exitcode(status), True, usage.ru_maxrss / 1024
        time.sleep(0.02)


def serve() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request["args"], request["stdout"], request["stderr"])
        code, timed_out, peak = _wait(pid, float(request["timeout"]))
        answer = {"returncode": code, "timed_out": timed_out, "peak_rss_mb": peak}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    serve()
