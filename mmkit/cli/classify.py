"""``eval`` and ``infer`` for a classification modality (audio, video): the same two commands,
parameterised by the modality, so each sub-app only spells out its own ``prepare`` and ``train``.

No ``from __future__ import annotations`` here: Typer reads these signatures at run time, and the
``--<modality>-column`` option is built per modality, so the annotations must be real objects.
"""

import importlib
from typing import Annotated

import typer

from mmkit.cli import common as c


def add_eval_and_infer(app: typer.Typer, modality: str, *, config: str, infer_help: str) -> None:
    """Register ``eval`` and ``infer`` on ``app`` for ``mmkit.pipelines.<modality>``."""
    column = Annotated[
        str | None,
        typer.Option(f"--{modality}-column", help=f"HF {modality} column.", show_default=False),
    ]

    def pipeline():
        return importlib.import_module(f"mmkit.pipelines.{modality}")

    @app.command("eval")
    def eval_(
        checkpoint: c.Checkpoint,
        dataset: c.Dataset = None,
        split: c.Split = "auto",
        device: c.Device = None,
        hf_config: c.HfConfig = None,
        media_column: column = None,
        label_column: c.LabelColumn = None,
        json_: c.Json = False,
    ) -> None:
        """Accuracy, macro-F1, per-class report and confusion matrix (JSON + PNG)."""
        from mmkit.config import build_config

        module = pipeline()
        flags = {
            "dataset": dataset,
            "device": device,
            "hf_config": hf_config,
            f"{modality}_column": media_column,
            "label_column": label_column,
        }
        cfg = build_config(getattr(module, config), None, flags)
        result = module.evaluate(checkpoint, cfg, split=split, progress=c.progress_for(json_))
        c.render_eval(result, json_)

    def infer(
        paths: c.Paths,
        checkpoint: c.Checkpoint,
        top_k: c.TopK = 3,
        device: c.Device = None,
        json_: c.Json = False,
    ) -> None:
        results = pipeline().infer(
            paths, checkpoint, k=top_k, device=device or "auto", progress=c.progress_for(json_)
        )
        c.render_infer(results, json_)

    infer.__doc__ = infer_help
    app.command()(infer)
