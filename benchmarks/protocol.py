"""What every quality protocol in ``benchmarks/`` shares: run a recipe once per seed on a fixed
test set (refusing a result that did not score every test item), summarise over seeds, name the
code version, break accuracy down by a column of the test manifest."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SHORT_KEYS = ("accuracy", "macro_f1", "num_samples", "val_accuracy", "best_epoch", "epochs_run")
SHORT_KEYS += ("last_accuracy", "per_format", "trace", "conditions")


def base_parser(description: str, default_data: Path) -> argparse.ArgumentParser:
    """The options every protocol shares: seeds, epochs, JSON output, the generated-data cache,
    where to keep the runs, and torch's thread count."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's own")
    parser.add_argument("--json", action="store_true", help="print one JSON document only")
    parser.add_argument("--data", type=Path, default=default_data, help="generated-data cache")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    return parser


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std, min and max over seeds, rounded to 4 places."""
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def metric_summary(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """:func:`summarize` of the ``accuracy`` and ``macro_f1`` of each seed's result."""
    return {m: summarize([r[m] for r in results]) for m in ("accuracy", "macro_f1")}


def code_version() -> str:
    """The git commit of the code that ran (``+dirty`` with uncommitted changes)."""
    root = Path(__file__).resolve().parents[1]

    def git(*cmd: str) -> str:
        proc = subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def run_seeds(
    run: Callable[[int], dict[str, Any]], seeds: Sequence[int], test_files: int, label: str
) -> list[dict[str, Any]]:
    """``run(seed)`` for each seed, each result checked to have scored all ``test_files`` items
    (its ``num_samples``, and ``last_num_samples`` when given) and stamped with its seed and
    seconds; one line per seed on stderr."""
    out = []
    for seed in seeds:
        t0 = time.perf_counter()
        result = run(seed)
        scored = {result["num_samples"], result.get("last_num_samples", test_files)}
        if scored != {test_files}:
            raise RuntimeError(
                f"{label} seed {seed}: scored {sorted(scored)} items, "
                f"but the test set has {test_files}"
            )
        result = {"seed": seed, **result, "seconds": round(time.perf_counter() - t0, 1)}
        out.append(result)
        short = " ".join(f"{k}={_short(result[k])}" for k in SHORT_KEYS if k in result)
        print(f"{label} seed {seed}: {short}", file=sys.stderr, flush=True)
    return out


def _short(value: Any) -> Any:
    """A per-condition report as ``{name: accuracy}`` for the one-line seed summary."""
    if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
        return {k: v.get("accuracy") for k, v in value.items()}
    return value


def breakdown(rows: Sequence[dict[str, str]], hits: Sequence[bool], key: str) -> dict[str, float]:
    """Accuracy per value of the manifest column ``key`` (``format``, ``group``): a diagnostic
    of which codec, rate or source loses."""
    out: dict[str, list[bool]] = {}
    for row, hit in zip(rows, hits, strict=True):
        out.setdefault(row[key], []).append(hit)
    return {k: round(sum(v) / len(v), 3) for k, v in sorted(out.items())}


def transfer_rows(
    run: Callable[[int, str, int], dict[str, Any]],
    shots: Sequence[int],
    modes: Sequence[str],
    seeds: Sequence[int],
    test_files: int,
    *,
    classes: int,
    unit: str,
) -> dict[str, dict[str, Any]]:
    """The rows of a transfer report: ``run(shots, mode, seed)`` for every size, mode and seed
    (each checked by :func:`run_seeds`), accuracy and macro-F1 (and ``last_accuracy`` where the
    results have it) summarised over seeds, keyed ``"<mode>-<shots>"``."""
    rows: dict[str, dict[str, Any]] = {}
    for k in shots:
        for mode in modes:
            results = run_seeds(
                lambda seed, k=k, mode=mode: run(k, mode, seed),
                seeds,
                test_files,
                f"{mode} {k}/{unit}",
            )
            keys = [key for key in ("accuracy", "macro_f1", "last_accuracy") if key in results[0]]
            rows[f"{mode}-{k}"] = {
                "mode": mode,
                "shots": k,
                "train_files": k * classes,
                "num_samples": test_files,
                **{key: summarize([r[key] for r in results]) for key in keys},
                "seeds": results,
            }
    return rows


def print_transfer(report: dict[str, Any], as_json: bool, header: str, unit: str) -> None:
    """A transfer report: one JSON document, or ``header`` and :func:`transfer_table`."""
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(header)
    print("\n".join(transfer_table(report, unit)))


def transfer_table(report: dict[str, Any], unit: str) -> list[str]:
    """A transfer report's rows as a markdown table: start, clips per ``unit``, accuracy and
    macro-F1 mean ± std, accuracy per seed, the final weights' mean accuracy (where the rows
    have ``last_accuracy``) and the test items scored."""
    last = all("last_accuracy" in row for row in report["rows"].values())
    head = ["start", f"clips/{unit}", "accuracy mean ± std", "macro-F1 mean ± std", "per seed"]
    head += ["last", "n"] if last else ["n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"].values():
        acc, f1 = row["accuracy"], row["macro_f1"]
        cells = [row["mode"], str(row["shots"]), f"{acc['mean']:.3f} ± {acc['std']:.3f}"]
        cells += [f"{f1['mean']:.3f} ± {f1['std']:.3f}"]
        cells += [" / ".join(f"{s['accuracy']:.3f}" for s in row["seeds"])]
        cells += [f"{row['last_accuracy']['mean']:.3f}"] if last else []
        lines.append("| " + " | ".join([*cells, str(row["num_samples"])]) + " |")
    return lines
