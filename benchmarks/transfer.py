"""Transfer protocol for ``--pretrained``: does starting from an earlier mmkit run beat training
from scratch on a small new task, and by how much?

Audio (``transfer_data.py``): pretrain once with ``mmkit audio train`` defaults on espeak-ng's
spoken digits; then, for each fine-tuning size (5 and 20 clips per word) and seed, train on flite's
command words (yes/no/.../go) three ways and score the best checkpoint on EVERY clip of the
held-out flite speakers' test set. The fine-tuning sets are plain folders, as a user's would
be: mmkit's hash split keeps about a tenth back and carves validation from the rest (43 of the
50 files train at 5 clips per word, 165 of 200 at 20):

- ``scratch``: the defaults from random weights;
- ``finetune``: ``--pretrained <pretrain run>`` (the whole network trains, with the same
  training defaults as scratch: benchmarks/RESULTS-transfer.md screens the alternatives);
- ``freeze``: ``--pretrained <pretrain run> --freeze backbone`` (a linear probe).

    python benchmarks/transfer.py [--seeds 0 1 2] [--shots 5 20] [--modes scratch finetune freeze]
                                  [--json] [--data DIR] [--set key=value ...]

``--set`` items go to every fine-tuning run (``--set epochs=20``); ``--pretrain-set`` to the
pretraining run only. Accuracy and macro-F1 per seed, then mean, std, min and max.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.protocol import base_parser, code_version, print_transfer, transfer_rows
from benchmarks.transfer_data import TransferData, TransferSpec, ensure_data

DEFAULT_DATA = Path("~/.cache/mmkit/bench/transfer")
MODES = ("scratch", "finetune", "freeze")


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0], DEFAULT_DATA)
    p.add_argument("--shots", type=int, nargs="+", default=[5, 20])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--pretrain-run", type=Path, default=None,
        help="an earlier pretraining run to start from (skips pretraining)",
    )  # fmt: skip
    return p


def train(dataset: Path, out: Path, flags: dict[str, Any], sets: Sequence[str]) -> Any:
    """One ``audio.train`` run (its ``TrainResult``)."""
    from mmkit.config import build_config
    from mmkit.pipelines import audio

    cfg = build_config(
        audio.AudioConfig, None, {"dataset": str(dataset), "out": str(out), **flags}, sets
    )
    return audio.train(cfg)


def train_and_score(
    dataset: Path, test: TransferData, out: Path, flags: dict[str, Any], sets: Sequence[str]
) -> dict[str, Any]:
    """One fine-tuning run, its best checkpoint scored on every test clip."""
    from mmkit.pipelines import audio

    result = train(dataset, out, flags, sets)
    report = audio.evaluate(
        str(result.best_checkpoint), audio.AudioConfig(dataset=str(test.test_manifest)), split="all"
    )
    return {
        "accuracy": round(report["accuracy"], 4),
        "macro_f1": round(report["macro_f1"], 4),
        "num_samples": report["num_samples"],
        "val_accuracy": round(result.best_metric.get("accuracy", float("nan")), 4),
        "epochs_run": result.epochs,
    }


def mode_flags(mode: str, pretrained: Path) -> dict[str, Any]:
    if mode == "scratch":
        return {}
    return {"pretrained": str(pretrained), **({"freeze": "backbone"} if mode == "freeze" else {})}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(max(1, args.threads))
    spec = TransferSpec(shots=tuple(sorted(set(args.shots))))
    data = ensure_data(args.data, spec)
    out = args.out or Path(tempfile.mkdtemp(prefix="mmkit-transfer-"))
    pre_flags: dict[str, Any] = {"seed": 0}
    if args.epochs is not None:
        pre_flags["epochs"] = args.epochs
    # the pretraining task (digits) has other labels than the test set: it is not scored there
    if args.pretrain_run is not None:
        pretrained = args.pretrain_run / "best"
        metrics = json.loads((pretrained / "config.json").read_text()).get("metrics", {})
        pretrain = {"val_accuracy": metrics.get("accuracy"), "run": str(args.pretrain_run)}
    else:
        result = train(data.pretrain_dir, out / "pretrain", pre_flags, args.pretrain_set)
        pretrain = {
            "val_accuracy": round(result.best_metric.get("accuracy", float("nan")), 4),
            "epochs_run": result.epochs,
        }
        pretrained = result.best_checkpoint
    print(f"pretrain: val_accuracy={pretrain['val_accuracy']}", file=sys.stderr, flush=True)
    rows = transfer_rows(
        lambda shots, mode, seed: train_and_score(
            data.finetune_dirs[shots],
            data,
            out / f"{mode}-{shots}" / f"seed{seed}",
            {"seed": seed, **mode_flags(mode, pretrained)},
            args.set,
        ),
        spec.shots,
        args.modes,
        args.seeds,
        data.test_files,
        classes=10,
        unit="word",
    )
    return {
        "protocol": "transfer-audio",
        "code": code_version(),
        "set": args.set,
        "pretrain": {"files": data.pretrain_files, "set": args.pretrain_set, **pretrain},
        "test": {"files": data.test_files, "speakers": "flite rms, slt (held out)"},
        "seeds": list(args.seeds),
        "rows": rows,
    }


def print_report(report: dict[str, Any], as_json: bool) -> None:
    header = f"code {report['code']}; test: {report['test']['files']} clips, held-out speakers"
    print_transfer(report, as_json, header, "word")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    print_report(run(args), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
