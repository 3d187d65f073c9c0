"""``mmkit list`` and ``mmkit describe``."""

from __future__ import annotations

from typing import Annotated

import typer

from mmkit.cli.common import Json, out, print_json, table
from mmkit.registry import MODALITIES, describe, list_plugins


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_cmd(
        kind: Annotated[
            str | None, typer.Option(help="backbone or preprocessor.", show_default=False)
        ] = None,
        modality: Annotated[
            str | None, typer.Option(help=f"One of {', '.join(MODALITIES)}.", show_default=False)
        ] = None,
        json_: Json = False,
    ) -> None:
        """List registered backbones and preprocessors."""
        specs = list_plugins(kind, modality)
        if json_:
            print_json([s.to_dict() for s in specs])
            return
        rows = [[s.name, s.kind, s.modality, s.description] for s in specs]
        out.print(table("plugins", ["name", "kind", "modality", "description"], rows))

    @app.command("describe")
    def describe_cmd(
        name: Annotated[str, typer.Argument(help="A backbone or preprocessor name.")],
        json_: Json = False,
    ) -> None:
        """Show one plugin: what it is, where it comes from and its arguments."""
        spec = describe(name)
        if json_:
            print_json(spec.to_dict())
            return
        out.print(f"[bold]{spec.name}[/bold] ({spec.kind}, {spec.modality}) from {spec.module}")
        out.print(spec.description)
        rows = [[k, v] for k, v in spec.signature().items()]
        out.print(table("arguments", ["argument", "default"], rows))
