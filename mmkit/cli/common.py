"""Shared CLI pieces: reusable ``Annotated`` options, the one output channel, rich progress."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

out = Console()
err = Console(stderr=True)

# -- options shared by every modality (None = not given, so --config values can show through) ---
Dataset = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help="Folder, CSV/JSONL manifest, HF dir/parquet, hub id or alias.",
        show_default=False,
    ),
]
StoreOut = Annotated[
    str | None,
    typer.Option(
        "--out", "-o", help="Store directory (default: the mmkit cache).", show_default=False
    ),
]
Paths = Annotated[list[str], typer.Argument(help="Media files or folders.", show_default=False)]
Out = Annotated[
    str | None, typer.Option("--out", "-o", help="Run directory to write.", show_default=False)
]
Backbone = Annotated[
    str | None, typer.Option(help="Registered backbone (see `mmkit list`).", show_default=False)
]
Epochs = Annotated[int | None, typer.Option(help="Training epochs.", show_default=False, min=1)]
BatchSize = Annotated[int | None, typer.Option(help="Batch size.", show_default=False, min=1)]
Lr = Annotated[
    float | None,
    typer.Option(help="Peak learning rate (AdamW, warmup + cosine).", show_default=False),
]
Seed = Annotated[int | None, typer.Option(help="Seed for every random choice.", show_default=False)]
Device = Annotated[str | None, typer.Option(help="auto, cpu or cuda.", show_default=False)]
Workers = Annotated[
    int | None, typer.Option(help="DataLoader worker processes.", show_default=False, min=0)
]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
]
Augment = Annotated[
    bool | None,
    typer.Option("--augment/--no-augment", help="Training augmentation.", show_default=False),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML experiment file; flags override it.",
        exists=False,
        show_default=False,
    ),
]
Checkpoint = Annotated[
    str,
    typer.Option(
        "--checkpoint", "-k", help="Run directory (its best checkpoint) or checkpoint directory."
    ),
]
Split = Annotated[
    str,
    typer.Option(
        help="auto: the test split of a dataset with splits, every item of one without (or the "
        "held-back test part of the dataset the checkpoint trained on); test, validation, "
        "train; or all."
    ),
]
TopK = Annotated[int, typer.Option("--top-k", help="How many labels to show per file.", min=1)]
Json = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
HfConfig = Annotated[str | None, typer.Option(help="HF dataset config name.", show_default=False)]
LabelColumn = Annotated[str | None, typer.Option(help="HF label column.", show_default=False)]


def config_flags(values: dict[str, Any], *skip: str) -> dict[str, Any]:
    """A command's parameters (its ``locals()``) as config keys, minus CLI-only ones."""
    return {k: v for k, v in values.items() if k not in {"config", "json_", *skip}}


def print_json(data: Any) -> None:
    """The ``--json`` output: one document on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c not in (columns[0],) else "left")
    for r in rows:
        t.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r))
    return t


class RichProgress:
    """Renders the library's progress events as rich bars on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or err
        self._bar: Progress | None = None
        self._task: Any = None

    def start(self, task: str, total: int | None) -> None:
        self._close()
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(task, total=total, info="")

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._bar is None:
            return
        info = "  ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items()
        )
        self._bar.update(self._task, advance=n, info=info)

    def end(self, **summary: Any) -> None:
        self._close()
        if summary:
            text = "  ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
            )
            self.console.print(f"  [dim]{text}[/dim]")

    def message(self, text: str) -> None:
        self.console.print(f"[yellow]{text}[/yellow]", highlight=False)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class MessagesOnly:
    """``--json`` mode: no bars, but one-line notes (skipped files, what eval scored) still go
    to stderr, so stdout holds the JSON document alone."""

    def start(self, task: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def end(self, **summary: Any) -> None:
        pass

    def message(self, text: str) -> None:
        err.print(text, highlight=False, markup=False, soft_wrap=True)


def progress_for(json_mode: bool) -> Any:
    """Rich bars on stderr, or only the notes under ``--json``."""
    return MessagesOnly() if json_mode else RichProgress()


def render_train(result: dict[str, Any], json_mode: bool) -> None:
    if json_mode:
        print_json(result)
        return
    out.print(f"[green]done[/green] after {result['epochs']} epochs; best {result['best_metric']}")
    out.print(f"best checkpoint: {result['best_checkpoint']}")
    out.print(
        f"curves: {Path(result['run_dir']) / 'curves.png'}   metrics: "
        f"{Path(result['run_dir']) / 'metrics.jsonl'}"
    )


def render_eval(result: dict[str, Any], json_mode: bool) -> None:
    if json_mode:
        print_json(result)
        return
    out.print(
        f"accuracy [bold]{result['accuracy']:.4f}[/bold]   macro-F1 "
        f"[bold]{result['macro_f1']:.4f}[/bold]   samples {result['num_samples']} "
        f"({result['split']} split)"
    )
    rows = [
        [label, m["precision"], m["recall"], m["f1"], m["support"]]
        for label, m in result["per_class"].items()
    ]
    out.print(table("per class", ["label", "precision", "recall", "f1", "support"], rows))
    if "confusion_png" in result:
        out.print(f"confusion matrix: {result['confusion_png']}")


MAX_SEGMENTS = 20
"""Lines of windows a long file shows in the human ``infer`` output (``--json`` has them all)."""


def render_infer(results: list[dict[str, Any]], json_mode: bool) -> None:
    if json_mode:
        print_json(results)
        return
    for r in results:
        best = ", ".join(f"{t['label']} {t['score']:.3f}" for t in r["top_k"])
        out.print(f"[bold]{r['path']}[/bold]: {best}", highlight=False)
        windows = r.get("windows", [])
        segments = _segments(windows)
        for start, end, label, score, count in segments[:MAX_SEGMENTS]:
            more = f" ({count} windows)" if count > 1 else ""
            out.print(f"  {start:7.2f}-{end:<7.2f} {label} {score:.3f}{more}", highlight=False)
        if len(segments) > MAX_SEGMENTS:
            out.print(
                f"  ... {len(segments) - MAX_SEGMENTS} more segments ({len(windows)} windows in "
                "all; --json lists every window)",
                highlight=False,
            )


def _segments(windows: list[dict[str, Any]]) -> list[tuple[float, float, str, float, int]]:
    """Runs of consecutive windows with the same best label: ``(start, end, label, mean best
    score, windows)``, so an hour of one speaker is one line, not 7,200."""
    runs: list[tuple[float, float, str, float, int]] = []
    for w in windows:
        label, score = w["top_k"][0]["label"], w["top_k"][0]["score"]
        if runs and runs[-1][2] == label:
            start, _, _, total, count = runs[-1]
            runs[-1] = (start, w["end"], label, total + score, count + 1)
        else:
            runs.append((w["start"], w["end"], label, score, 1))
    return [(a, b, label, total / n, n) for a, b, label, total, n in runs]


def split_source_line(source: str) -> str:
    """What the split counts of a ``prepare`` report mean."""
    if source == "hash":
        return (
            "splits: the dataset names none; mmkit split it by a hash of each speaker/group or "
            "file name (training uses train/validation; eval of another checkpoint scores all)"
        )
    return "splits: as the dataset names them"


def render_prepare(summary: dict[str, Any], json_mode: bool) -> None:
    if json_mode:
        print_json(summary)
        return
    out.print(f"prepared store: [bold]{summary['path']}[/bold] ({summary['num_items']} items)")
    out.print(split_source_line(summary["split_source"]), highlight=False)
    splits = [s for s in summary["per_class"] if summary["per_class"][s]]
    rows = [
        [label, *(summary["per_class"][s].get(label, 0) for s in splits)]
        for label in summary["labels"]
    ]
    rows.append(["total", *(summary["splits"][s] for s in splits)])
    if "seconds" in summary:
        rows.append(["seconds", *(round(summary["seconds"].get(s, 0.0), 1) for s in splits)])
    out.print(table("files per class and split", ["label", *splits], rows))
    for s in summary["skipped"]:
        out.print(f"[yellow]skipped[/yellow] {s['name']}: {s['reason']}", highlight=False)
