"""Cross-engine protocol for ``mmkit audio train``: do the defaults generalise to speech engines,
speakers and formats never seen in training?

For each direction (train on espeak-ng voices -> test on flite voices, and the reverse), train with
the given recipe on the training engine's folder (1 s, 16 kHz wav, no split: mmkit carves its own
validation set) and score the best checkpoint with ``mmkit.pipelines.audio.evaluate(...,
split="all")`` on EVERY clip of the other engine's test set (0.4-0.95 s, random gain, faint
noise, mp3/flac/ogg/wav at 8-48 kHz; see ``cross_engine_data.py``). Accuracy and macro-F1 per
seed, then mean, std, min and max.

    python benchmarks/cross_engine.py [--seeds 0 1 2] [--epochs N] [--json] [--data DIR]
                                      [--set key=value ...] [--direction espeak-flite]

``--set`` is ``mmkit audio train --set``: any ``AudioConfig`` key, dotted inside mappings, e.g.
``--set backbone=audio_resnet --set wave_augment.trim.p=0``. Generated data is cached under
``--data`` (default ``~/.cache/mmkit/bench/cross_engine``). ``plain_baseline.py`` runs the same
protocol for a plain PyTorch recipe.

``--conditions [NAME ...]`` also scores each mmkit run on the recording conditions of
``real_conditions.py`` (rooms, microphones, phone and codec channels, trimming, tempo, pitch,
level; every word of the held-out engine in each), ``--real DIR`` on a folder of real
recordings (``real_recordings.py``), and ``--rescore REPORT --out RUNS`` scores the kept runs of
an earlier report on them without training again.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cross_engine_data import ENGINES, DataSpec, EngineData, ensure_data, other_engine
from benchmarks.protocol import (
    base_parser,
    breakdown,
    code_version,
    metric_summary,
    run_seeds,
)
from benchmarks.real_conditions import CONDITIONS, ConditionSpec, ensure_conditions
from benchmarks.real_recordings import ensure_real

DEFAULT_DATA = Path("~/.cache/mmkit/bench/cross_engine")
DIRECTIONS = tuple(f"{e}-{other_engine(e)}" for e in ENGINES)

# (train data, test data, seed, epochs or None for the recipe's default, run dir) -> seed result
Recipe = Callable[[EngineData, EngineData, int, "int | None", Path], dict[str, Any]]


def protocol_parser(description: str) -> argparse.ArgumentParser:
    """The options every recipe of the protocol shares."""
    parser = base_parser(description, DEFAULT_DATA)
    parser.add_argument(
        "--direction", choices=DIRECTIONS, nargs="+", default=list(DIRECTIONS), dest="directions"
    )
    parser.add_argument("--voices", type=int, default=None, help="voices per engine (all)")
    parser.add_argument("--takes", type=int, default=2, help="takes per training word")
    parser.add_argument(
        "--conditions",
        nargs="*",
        default=None,
        metavar="NAME",
        help="also score the recording conditions of real_conditions.py (all when none named)",
    )
    parser.add_argument(
        "--real", type=Path, default=None, help="a folder of real recordings to score too"
    )
    return parser


def with_conditions(test: EngineData, args: argparse.Namespace) -> EngineData:
    """``test`` with the recording conditions (and real recordings) that ``args`` asks for."""
    extra: list[tuple[str, Path, int]] = []
    if args.conditions is not None:
        names = tuple(args.conditions) or CONDITIONS
        spec = ConditionSpec(conditions=names, voices=args.voices)
        sets = ensure_conditions(args.data, test.engine, spec, progress=_note)
        extra += [(c.name, c.manifest, c.files) for c in sets]
    if args.real is not None:
        real = ensure_real(args.real, args.data)
        extra += [(real.name, real.manifest, real.files)]
    return replace(test, conditions=tuple(extra))


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def condition_summary(test: EngineData, seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std, min and max over seeds of each condition's accuracy and macro-F1."""
    if not test.conditions or not all("conditions" in s for s in seeds):
        return {}
    return {
        cond: {"num_samples": files, **metric_summary([s["conditions"][cond] for s in seeds])}
        for cond, _, files in test.conditions
    }


def rescore(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``report`` (an earlier run of this protocol, its runs kept under ``--out``) with each
    seed's best checkpoint scored on the conditions ``args`` asks for: no training."""
    data = ensure_data(args.data, DataSpec(voices=args.voices, takes=args.takes))
    for direction, d in report["directions"].items():
        test = with_conditions(data[direction.split("-")[1]], args)
        for seed in d["seeds"]:
            best = args.out / direction / f"seed{seed['seed']}" / "best"
            seed["conditions"] = score_conditions(best, test)
        d["conditions"] = condition_summary(test, d["seeds"])
    real = str(args.real) if args.real else None
    report["rescored"] = {"code": code_version(), "conditions": args.conditions, "real": real}
    return report


def run_protocol(
    recipe: Recipe, args: argparse.Namespace, *, name: str, settings: dict[str, Any]
) -> dict[str, Any]:
    """Run ``recipe`` for every direction and seed; the protocol report (see README)."""
    import torch

    torch.set_num_threads(max(1, args.threads))
    code = code_version()
    spec = DataSpec(voices=args.voices, takes=args.takes)
    data = ensure_data(args.data, spec)
    out = args.out or Path(tempfile.mkdtemp(prefix="mmkit-cross-engine-"))
    directions = {}
    for direction in args.directions:
        train_engine, test_engine = direction.split("-")
        train, test = data[train_engine], with_conditions(data[test_engine], args)
        seeds = run_seeds(
            lambda seed, train=train, test=test, d=direction: recipe(
                train, test, seed, args.epochs, out / d / f"seed{seed}"
            ),
            args.seeds,
            test.test_files,
            f"{name} {direction}",
        )
        directions[direction] = {
            "train": {"engine": train_engine, "files": train.train_files},
            "test": {"engine": test_engine, "files": test.test_files},
            "num_samples": test.test_files,
            **metric_summary(seeds),
            "conditions": condition_summary(test, seeds),
            "seeds": seeds,
        }
    return {
        "recipe": name,
        "code": code,
        "settings": settings,
        "epochs": args.epochs,
        "seeds": list(args.seeds),
        "data": {"dir": str(Path(args.data).expanduser()), **spec.__dict__},
        "directions": directions,
    }


def print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"recipe: {report['recipe']} {json.dumps(report['settings'])} epochs={report['epochs']}")
    print("| direction | accuracy mean ± std | macro-F1 mean ± std | per seed (acc) | n |")
    print("|---|---|---|---|---|")
    for direction, d in report["directions"].items():
        acc, f1 = d["accuracy"], d["macro_f1"]
        per_seed = " / ".join(f"{s['accuracy']:.3f}" for s in d["seeds"])
        print(
            f"| {direction} | {acc['mean']:.3f} ± {acc['std']:.3f} | "
            f"{f1['mean']:.3f} ± {f1['std']:.3f} | {per_seed} | {d['num_samples']} |"
        )
        for name, c in d.get("conditions", {}).items():
            acc, f1 = c["accuracy"], c["macro_f1"]
            per_seed = " / ".join(f"{s['conditions'][name]['accuracy']:.3f}" for s in d["seeds"])
            print(
                f"| {direction} {name} | {acc['mean']:.3f} ± {acc['std']:.3f} | "
                f"{f1['mean']:.3f} ± {f1['std']:.3f} | {per_seed} | {c['num_samples']} |"
            )


def manifest_rows(manifest: Path) -> list[dict[str, str]]:
    """A manifest's rows (the test manifest's: ``path``, ``label``, ``format``)."""
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def score_conditions(checkpoint: str | Path, test: EngineData) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 of ``checkpoint`` on each of ``test``'s condition sets (every file;
    a set that did not score every file raises)."""
    from mmkit.pipelines import audio

    out = {}
    for name, manifest, files in test.conditions:
        cfg = audio.AudioConfig(dataset=str(manifest))
        report = audio.evaluate(str(checkpoint), cfg, split="all")
        if report["num_samples"] != files:
            raise RuntimeError(f"{name}: scored {report['num_samples']} of {files} files")
        out[name] = {
            "accuracy": round(report["accuracy"], 4),
            "macro_f1": round(report["macro_f1"], 4),
            "num_samples": files,
        }
    return out


def mmkit_recipe(sets: Sequence[str]) -> Recipe:
    """``mmkit audio train`` with its defaults (plus ``--set`` items), scored by ``evaluate``."""

    def run(
        train: EngineData, test: EngineData, seed: int, epochs: int | None, run_dir: Path
    ) -> dict[str, Any]:
        from mmkit.config import build_config
        from mmkit.pipelines import audio

        flags: dict[str, Any] = {"dataset": str(train.train_dir), "out": str(run_dir), "seed": seed}
        if epochs is not None:
            flags["epochs"] = epochs
        cfg = build_config(audio.AudioConfig, None, flags, sets)
        result = audio.train(cfg)
        report, last = (
            audio.evaluate(
                str(ckpt), audio.AudioConfig(dataset=str(test.test_manifest)), split="all"
            )
            for ckpt in (result.best_checkpoint, result.last_checkpoint)
        )
        best = json.loads((Path(result.best_checkpoint) / "config.json").read_text())
        rows = manifest_rows(test.test_manifest)
        top = audio.infer(
            [str(test.test_dir / r["path"]) for r in rows], str(result.best_checkpoint)
        )
        hits = [t["top_k"][0]["label"] == r["label"] for t, r in zip(top, rows, strict=True)]
        return {
            "accuracy": round(report["accuracy"], 4),
            "macro_f1": round(report["macro_f1"], 4),
            "num_samples": report["num_samples"],
            "val_accuracy": round(result.best_metric.get("accuracy", float("nan")), 4),
            "best_epoch": best["epoch"],  # the epoch the trainer chose on validation
            "epochs_run": result.epochs,
            # the final weights, for judging model selection (the protocol scores the best)
            "last_accuracy": round(last["accuracy"], 4),
            "last_num_samples": last["num_samples"],
            "per_format": breakdown(rows, hits, "format"),
            **(
                {"conditions": score_conditions(result.best_checkpoint, test)}
                if test.conditions
                else {}
            ),
        }

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = protocol_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--rescore", type=Path, default=None, metavar="REPORT",
        help="score an earlier report's runs (kept under --out) on the conditions; no training",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rescore is not None:
        report = rescore(json.loads(args.rescore.read_text()), args)
        print_report(report, args.json)
        return 0
    report = run_protocol(mmkit_recipe(args.set), args, name="mmkit", settings={"set": args.set})
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
