"""An interrupted ``prepare`` at full size: SIGKILL half-way, run it again, and measure what the
second run decodes and how long it takes against an uninterrupted prepare of the same data.

    python benchmarks/prepare_resume.py --kind speech_commands --fraction 1 --json

Three whole ``mmkit <modality> prepare`` processes on the generated data set (see
``benchmarks/scale_data.py``; made once and cached): an uninterrupted one, one killed after
``--kill-at`` of that one's seconds, and the rerun that continues it. The rerun's own line
("continuing an interrupted prepare: N of M files were decoded before") says how much it kept; the
two final stores must hold the same bytes. The small-size version is a test
(``tests/test_prepare_resume.py``); this is the full-size figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mmkit.pipelines.bench.scale_data import KINDS, generate

MODALITY = {"speech_commands": "audio", "ucf101": "video", "coco": "mm"}
CONTINUED = re.compile(r"continuing an interrupted prepare: (\d+) of (\d+) files")


def prepare(modality: str, dataset: str, out: Path, kill_after: float | None = None) -> dict:
    """One ``prepare`` process: its seconds, exit code and stderr (killed after ``kill_after``)."""
    cmd = [sys.executable, "-m", "mmkit", modality, "prepare", "-d", dataset, "-o", str(out),
           "--json"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    return {"seconds": round(time.perf_counter() - start, 2), "rc": proc.returncode, "err": err}


def digest(store: Path) -> str:
    """SHA-256 over the store's data file and manifest, the bytes a rerun must reproduce."""
    h = hashlib.sha256()
    for name in ("data.bin", "mmkit_store.json"):
        with (store / name).open("rb") as f:
            while block := f.read(1 << 24):
                h.update(block)
    return h.hexdigest()


def run(kind: str, fraction: str, kill_at: float, work: Path) -> dict[str, Any]:
    data = generate(kind, fraction, None, workers=os.cpu_count() or 1)
    modality, dataset = MODALITY[kind], str(data.path)
    whole = prepare(modality, dataset, work / "whole")
    if whole["rc"] != 0:
        raise SystemExit(f"prepare failed: {whole['err'].strip()[-400:]}")
    killed = prepare(modality, dataset, work / "resumed", kill_after=kill_at * whole["seconds"])
    rerun = prepare(modality, dataset, work / "resumed")
    if rerun["rc"] != 0:
        raise SystemExit(f"the rerun failed: {rerun['err'].strip()[-400:]}")
    found = CONTINUED.search(rerun["err"])
    kept, total = (int(found[1]), int(found[2])) if found else (0, 0)
    return {
        "kind": kind,
        "fraction": fraction,
        "files": total,
        "uninterrupted_seconds": whole["seconds"],
        "killed_after_seconds": killed["seconds"],
        "killed_rc": killed["rc"],
        "files_kept_from_killed_run": kept,
        "files_decoded_by_rerun": total - kept,
        "rerun_seconds": rerun["seconds"],
        "rerun_over_uninterrupted_seconds": round(rerun["seconds"] / whole["seconds"], 3),
        "left_over_all_files": round((total - kept) / total, 3) if total else None,
        "same_store_bytes": digest(work / "whole") == digest(work / "resumed"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=KINDS, default="speech_commands")
    parser.add_argument("--fraction", default="1", help="1/64, 1/16, 1/4 or 1")
    parser.add_argument(
        "--kill-at", type=float, default=0.5, help="kill after this share of the first run's time"
    )
    parser.add_argument("--work", default=None, help="where the stores go (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="mmkit-resume-"))
    try:
        report = run(args.kind, args.fraction, args.kill_at, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:36} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
