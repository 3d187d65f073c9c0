"""``eval`` and ``infer`` for a classification modality (audio, video): the same two commands,
parameterised by the modality, so each sub-app only spells out its own ``prepare`` and ``train``.

No ``from __future__ import annotations`` here: Typer reads these signatures at run time, and the
``--<modality>-column`` option is built per modality, so the annotations must be real objects.
"""

import importlib
from typing import Annotated

import typer

from mmkit.cli import common as c
from mmkit.cli import output as o
from mmkit.cli.binding import command, config_from


def add_eval_and_infer(
    app: typer.Typer,
    modality: str,
    config: type,
    *,
    eval_example: str,
    infer_example: str,
    infer_help: str,
) -> None:
    """Register ``eval`` and ``infer`` on ``app`` for ``mmkit.pipelines.<modality>``."""
    column = Annotated[
        str | None,
        typer.Option(
            f"--{modality}-column",
            help=f"HF {modality} column.",
            show_default=False,
            rich_help_panel=c.HF,
        ),
    ]

    def pipeline():
        return importlib.import_module(f"mmkit.pipelines.{modality}")

    @command(
        app,
        config,
        name="eval",
        cli_only=("checkpoint", "split"),
        rename={"media_column": f"{modality}_column"},
        example=eval_example,
    )
    def eval_(
        ctx: typer.Context,
        checkpoint: c.Checkpoint,
        dataset: c.Dataset = None,
        split: c.Split = "auto",
        device: c.Device = None,
        hf_config: c.HfConfig = None,
        media_column: column = None,
        label_column: c.LabelColumn = None,
        config: c.ConfigFile = None,
        set_: c.Set = None,
        json_: c.Json = False,
    ) -> None:
        """Accuracy, macro-F1, per-class report and confusion matrix (JSON + PNG).

        The data-shaping options the model was trained with (clip length, sample rate, classes,
        frames, size...) come from the checkpoint; --config and --set give the rest.
        """
        cfg = config_from(ctx)
        module = pipeline()
        result = module.evaluate(checkpoint, cfg, split=split, progress=o.progress_for(json_))
        o.render_eval(result, json_)

    @command(app, cli_only=("paths", "checkpoint", "top_k", "device"), example=infer_example)
    def infer(
        paths: c.Paths,
        checkpoint: c.Checkpoint,
        top_k: c.TopK = 3,
        device: c.Device = None,
        json_: c.Json = False,
    ) -> None:
        results = pipeline().infer(
            paths, checkpoint, k=top_k, device=device or "auto", progress=o.progress_for(json_)
        )
        o.render_infer(results, json_)

    infer.__doc__ = infer_help
