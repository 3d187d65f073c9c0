"""``mmkit list`` and ``mmkit describe``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from mmkit.cli import common as c
from mmkit.cli.binding import command
from mmkit.cli.output import out, print_json, table
from mmkit.registry import (
    DEFAULT_INPUT,
    MODALITIES,
    REGISTRIES,
    PluginSpec,
    describe,
    list_plugins,
)


def register(app: typer.Typer) -> None:
    @command(
        app,
        name="list",
        cli_only=("patterns", "kind", "modality"),
        example="mmkit list '*vit*' --kind backbone",
    )
    def list_cmd(
        patterns: Annotated[
            list[str] | None,
            typer.Argument(
                help="Wildcard filters on the name (fnmatch, like timm.list_models: '*vit*').",
                metavar="PATTERN",
                show_default=False,
            ),
        ] = None,
        kind: Annotated[
            Literal[tuple(REGISTRIES)] | None,
            typer.Option(help="Plugin kind.", show_default=False),
        ] = None,
        modality: Annotated[
            Literal[MODALITIES] | None, typer.Option(help="Modality.", show_default=False)
        ] = None,
        json_: c.Json = False,
    ) -> None:
        """List registered backbones, preprocessors and dataset layouts."""
        specs = list_plugins(kind, modality, patterns)
        if json_:
            print_json([s.to_dict() for s in specs])
            return
        rows = [[s.name, s.kind, s.modality, s.description + _notes(s)] for s in specs]
        columns = ["name", "kind", "modality", "description"]
        out.print(table("plugins", columns, rows))

    @command(app, name="describe", cli_only=("name",), example="mmkit describe audio_cnn")
    def describe_cmd(
        name: Annotated[str, typer.Argument(help="A backbone, preprocessor or layout name.")],
        json_: c.Json = False,
    ) -> None:
        """Show one plugin: what it is, where it comes from and its arguments."""
        spec = describe(name)
        if json_:
            print_json(spec.to_dict())
            return
        out.print(f"[bold]{spec.name}[/bold] ({spec.kind}, {spec.modality}) from {spec.module}")
        out.print(spec.description)
        if spec.input:
            out.print(f"input: {spec.input}")
        rows = [[k, v] for k, v in spec.signature().items()]
        if rows:  # a layout has none
            out.print(table("arguments", ["argument", "default"], rows))
        if spec.weights:
            rows = [
                [tag, _source(info.pop("source")), ", ".join(f"{k} {v}" for k, v in info.items())]
                for tag, info in spec.to_dict()["weights"].items()
            ]
            out.print(table("pretrained weights", ["tag", "from", "trained with"], rows))


def _notes(spec: PluginSpec) -> str:
    """An input other than the modality's usual one, and the pretrained weights tags."""
    if spec.kind != "backbone":
        return ""
    notes = f" Input: {spec.input}." if spec.input != DEFAULT_INPUT.get(spec.modality) else ""
    return notes + (f" Weights: {', '.join(spec.weights)}." if spec.weights else "")


def _source(source: str) -> str:
    """``torchvision.models.video:R3D_18_Weights.KINETICS400_V1`` -> ``torchvision
    R3D_18_Weights.KINETICS400_V1``."""
    module, _, attrs = source.partition(":")
    return f"{module.split('.')[0]} {attrs}"
