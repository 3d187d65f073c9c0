"""The one output channel: results on stdout (rich tables, or one JSON document under ``--json``),
progress and notes on stderr (rich bars on a terminal, plain unwrapped lines anywhere else)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mmkit.events import NullProgress

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

_ESCAPES = {
    c: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(chr(c), f"\\x{c:02x}")
    for c in (*range(32), *range(127, 160))
}
# line and paragraph separators (str.splitlines breaks at them) and the bidirectional embeddings,
# overrides and isolates, which reorder the rest of a line on the screen
_ESCAPES |= {
    c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}


def one_line(text: str) -> str:
    """``text`` with its control characters (newline, escape, NUL, ...) written as ``\\n``,
    ``\\x1b``, and the line separators and bidirectional overrides as ``\\u2028``, ``\\u202e``:
    a file name or caption never breaks a one-line message, drives the terminal or reorders
    what follows it."""
    return text.translate(_ESCAPES)


def shown(text: str) -> str:
    """:func:`one_line` for a rich print with markup: ``[`` in a name or caption is text."""
    return escape(one_line(text))


def number(value: Any) -> str:
    """A value as a table cell: floats rounded to 4 decimals, None as '-'."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def fields_text(fields: Mapping[str, Any]) -> str:
    """``loss 0.5123  lr 0.003``: numbers to 4 significant digits, one line."""
    return "  ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items()
    )


def print_json(data: Any) -> None:
    """The ``--json`` output: one document on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table; numeric columns right-aligned, floats rounded (see :func:`number`)."""
    t = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        numeric = i > 0 and all(_numeric(r[i]) for r in rows)
        t.add_column(c, justify="right" if numeric else "left")
    for r in rows:
        t.add_row(*(number(v) for v in r))
    return t


def _numeric(value: Any) -> bool:
    if isinstance(value, str):
        try:
            float(value.replace(",", ""))
        except ValueError:
            return False
        return True
    return value is None or isinstance(value, int | float)


def mapping_tables(title: str, data: Mapping[str, Any]) -> list[Table | str]:
    """A nested result as tables: scalars in a key/value table, same-shaped mappings of numbers
    as one table (a row each), lists of mappings as a table, lists of strings as lines."""
    scalars = [[k, v] for k, v in data.items() if not isinstance(v, Mapping | list)]
    parts: list[Table | str] = [table(title, ["key", "value"], scalars)] if scalars else []
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            groups.setdefault(tuple(value), []).append([key, *value.values()])
    parts += [table("", ["", *columns], rows) for columns, rows in groups.items()]
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            columns = list(value[0])
            parts.append(table(key, columns, [[v.get(c) for c in columns] for v in value]))
        elif isinstance(value, list):
            parts += [f"{key}:", *(f"  {v}" for v in value)]
    return parts


class RichProgress:
    """Renders the library's progress events as rich bars on stderr (a terminal)."""

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
        if self._bar is not None:
            self._bar.update(self._task, advance=n, info=fields_text(fields))

    def end(self, **summary: Any) -> None:
        self._close()
        if summary:
            self.console.print(f"  [dim]{fields_text(summary)}[/dim]", highlight=False)

    def message(self, text: str) -> None:
        self.console.print(f"[yellow]{shown(text)}[/yellow]", highlight=False)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class PlainProgress:
    """Progress as plain lines, never wrapped (CI logs, ``nohup``, ``| tee``): one line per
    finished phase (``epoch 3/30  12/12  train_loss 0.51  val_accuracy 0.93  4.2s``), and a
    line every ``every`` seconds while a long phase runs."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.every = every
        self.clock = clock
        self._task: str | None = None
        self._total: int | None = None
        self._done = 0
        self._fields: dict[str, Any] = {}
        self._t0 = self._last = 0.0

    def start(self, task: str, total: int | None) -> None:
        self._task, self._total, self._done, self._fields = task, total, 0, {}
        self._t0 = self._last = self.clock()

    def advance(self, n: int = 1, **fields: Any) -> None:
        self._done += n
        self._fields.update(fields)
        if self._task is not None and self.clock() - self._last >= self.every:
            self._last = self.clock()
            self._write(self._line(self._fields))

    def end(self, **summary: Any) -> None:
        if self._task is not None:
            self._write(self._line(summary))
        elif summary:
            self._write(fields_text(summary))
        self._task = None

    def message(self, text: str) -> None:
        self._write(one_line(text))

    def _line(self, fields: Mapping[str, Any]) -> str:
        count = f"{self._done}/{self._total}" if self._total else str(self._done)
        parts = [self._task or "", count, fields_text(fields), f"{self.clock() - self._t0:.1f}s"]
        return "  ".join(p for p in parts if p)

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()


class MessagesOnly(NullProgress):
    """``--json`` mode: no bars, but one-line notes (skipped files, what eval scored) still go
    to stderr, so stdout holds the JSON document alone."""

    def message(self, text: str) -> None:
        err.print(one_line(text), highlight=False, markup=False, soft_wrap=True)


def progress_for(json_mode: bool) -> Any:
    """Only the notes under ``--json``; rich bars when stderr is a terminal; plain lines
    otherwise."""
    if int(os.environ.get("RANK", "0")) > 0:  # torchrun: rank 0 reports for everyone
        return NullProgress()
    if json_mode:
        return MessagesOnly()
    return RichProgress() if err.is_terminal else PlainProgress()


def render_train(result: dict[str, Any], json_mode: bool) -> None:
    if json_mode:
        print_json(result)
        return
    best = fields_text(result["best_metric"])
    out.print(f"[green]done[/green] after {result['epochs']} epochs; best {best}", highlight=False)
    out.print(f"best checkpoint: {result['best_checkpoint']}", highlight=False)
    run = Path(result["run_dir"])
    out.print(f"curves: {run / 'curves.png'}   metrics: {run / 'metrics.jsonl'}", highlight=False)
    render_skipped(result.get("skipped", []))


def render_skipped(skipped: list[dict[str, str]], show: int = 10) -> None:
    """How many files the data step left out, and why (the first ``show`` of them)."""
    if not skipped:
        return
    out.print(f"[yellow]{len(skipped)} files skipped[/yellow] (unreadable):", highlight=False)
    for s in skipped[:show]:
        out.print(
            f"  {one_line(s['name'])}: {one_line(s['reason'])}", highlight=False, markup=False
        )
    if len(skipped) > show:
        out.print(f"  ... and {len(skipped) - show} more (all of them in --json)", highlight=False)


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
        out.print(f"confusion matrix: {result['confusion_png']}", highlight=False)
    render_skipped(result.get("skipped", []))


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
        rows.append(["seconds", *(f"{summary['seconds'].get(s, 0.0):.1f}" for s in splits)])
    out.print(table("files per class and split", ["label", *splits], rows))
    render_skipped(summary["skipped"], show=len(summary["skipped"]))
