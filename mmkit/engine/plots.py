"""PNG plots written next to runs and evaluations (matplotlib, headless).

Figures are made with :class:`matplotlib.figure.Figure` and drawn by the Agg canvas directly:
no ``pyplot``, so importing this module (or mmkit) never picks or switches matplotlib's backend
for the process that imports it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmkit.io.atomic import write_bytes_atomic


def _save(fig: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(fig)  # the figure's canvas: Agg, whatever the process's backend
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=100, format="png")
    write_bytes_atomic(Path(path), png.getvalue(), "plot")  # a full disk: the old one stays
    return Path(path)


def plot_curves(history: list[dict[str, Any]], path: str | Path, monitor: str) -> Path:
    """Training loss and the validation metric per epoch."""
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(9, 3.5))
    ax_loss, ax_metric = fig.subplots(1, 2)
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    if any("val_loss" in row for row in history):
        ax_loss.plot(epochs, [row.get("val_loss") for row in history], marker="o", label="val")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_loss.legend()
    key = f"val_{monitor}"
    ax_metric.plot(epochs, [row.get(key) for row in history], marker="o", color="tab:green")
    ax_metric.set(title=key, xlabel="epoch")
    return _save(fig, path)


def plot_confusion(matrix: list[list[int]], labels: list[str], path: str | Path) -> Path:
    """A confusion matrix (rows: true label, columns: predicted) with counts in the cells."""
    n = len(labels)
    size = max(4.0, 0.45 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=90)
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    peak = max((max(r) for r in matrix), default=0) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                color = "white" if count > peak / 2 else "black"
                ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    return _save(fig, path)
