"""``mmkit export``: a checkpoint as ONNX or TorchScript graphs plus a JSON sidecar."""

from __future__ import annotations

from typing import Annotated

import typer

from mmkit.cli import common as c
from mmkit.cli.binding import command
from mmkit.cli.output import out, print_json

FORMATS = ("onnx", "torchscript")


def register(app: typer.Typer) -> None:
    @command(
        app,
        name="export",
        cli_only=("checkpoint", "format_", "out_file"),
        example="mmkit export --checkpoint runs/kws --format onnx --out kws.onnx",
    )
    def export_cmd(
        checkpoint: c.Checkpoint,
        format_: Annotated[
            str,
            typer.Option(
                "--format",
                "-f",
                metavar="[onnx|torchscript]",
                autocompletion=lambda: list(FORMATS),
                help="onnx (the dynamo exporter; needs the export extra) or torchscript (traced).",
                show_default=False,
            ),
        ],
        out_file: Annotated[
            str | None,
            typer.Option(
                "--out",
                "-o",
                help="Model file to write (default: RUN/export/model.onnx or model.pt); the "
                "sidecar JSON goes beside it, image-text models write NAME.image and NAME.text.",
                show_default=False,
            ),
        ] = None,
        json_: c.Json = False,
    ) -> None:
        """Export a trained model with its preprocessing (dynamic batch axis) and a sidecar JSON
        (labels, inputs, the preprocessing outside the graph, tokenizer and logit scale)."""
        from mmkit.pipelines.export import export

        result = export(checkpoint, format_, out_file)
        if json_:
            print_json(result)
            return
        out.print(f"{result['modality']} model as {result['format']}", style="bold")
        for part, info in result["models"].items():
            shape = ", ".join(str(d) for d in info["input"]["shape"])
            lines = [
                f"{part}: {info['file']}",
                f"  input: {info['input']['name']} {info['input']['dtype']} [{shape}]",
                f"  before the graph: {', '.join(s['name'] for s in info['outside_graph'])}",
                f"  graph: {' -> '.join(info['in_graph'])}",
                f"  left out (identity in eval mode): "
                f"{', '.join(s['name'] for s in info['omitted'])}",
            ]
            for line in lines:
                if not line.endswith(": "):
                    out.print(line, highlight=False, markup=False)
        out.print(f"sidecar: {result['sidecar']}", highlight=False, markup=False)
