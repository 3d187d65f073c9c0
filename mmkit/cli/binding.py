"""How a command's options reach its config, declared once per command.

Every command is registered with :func:`command`, which records a :class:`Binding` on it: the
config dataclass its options fill, the parameters that are CLI-only (used by the command itself,
such as ``--json`` or ``--resume``) and renames (parameter -> config field). Every other parameter
is the config field of the same name. :func:`config_from` then builds the config from the click
context; an option counts as given only when it came from the command line (click's parameter
source), so defaults, ``--config`` and ``--set`` show through:

    dataclass defaults < --config FILE < --set key=value < explicit flags

:func:`show_config_defaults` writes each config field's default onto its option, so ``--help``
shows the effective default of that modality.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import typer

from mmkit.config import build_config, field_default

MECHANISM = frozenset({"config", "set_"})  # --config FILE and --set KEY=VALUE feed the config
GIVEN = frozenset({"COMMANDLINE", "ENVIRONMENT"})  # click's ParameterSource names


@dataclass(frozen=True)
class Binding:
    """The link between one command's parameters and its config dataclass."""

    config: type | None
    cli_only: frozenset[str] = frozenset()
    rename: Mapping[str, str] = field(default_factory=dict)

    def field_for(self, param: str) -> str | None:
        """The config field ``param`` fills; None for CLI-only parameters and the mechanism."""
        if param in self.cli_only or param in MECHANISM:
            return None
        return self.rename.get(param, param)

    def fields(self) -> set[str]:
        return {f.name for f in dataclasses.fields(self.config)} if self.config else set()


def command(
    app: typer.Typer,
    config: type | None = None,
    *,
    example: str,
    name: str | None = None,
    cli_only: tuple[str, ...] = (),
    rename: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command on ``app`` with its :class:`Binding` and one example line in --help.

    ``--json`` (``json_``) is CLI-only everywhere; list the command's other CLI-only parameters.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.binding = Binding(config, frozenset({"json_", *cli_only}), dict(rename or {}))
        app.command(name, epilog=f"Example: {example}")(fn)
        return fn

    return register


def binding_of(cmd: Any) -> Binding | None:
    """The :class:`Binding` of a click command (None for groups and foreign commands)."""
    return getattr(cmd.callback, "binding", None)


def config_from(ctx: typer.Context) -> Any:
    """The command's config from its parsed parameters (see the module docstring)."""
    binding = binding_of(ctx.command)
    if binding is None or binding.config is None:
        raise TypeError(f"command {ctx.command.name!r} has no config binding")
    flags = {}
    for param, value in ctx.params.items():
        name = binding.field_for(param)
        source = ctx.get_parameter_source(param)
        if name is not None and source is not None and source.name in GIVEN:
            flags[name] = value
    sets = ctx.params.get("set_") or ()
    return build_config(binding.config, ctx.params.get("config"), flags, sets)


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of a click tree with its path (``("audio", "train")``), groups included."""
    yield path, cmd
    if hasattr(cmd, "commands"):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, (*path, name))


def show_config_defaults(root: Any) -> None:
    """Give each option that fills a config field that field's default, shown in ``--help``.

    The options keep meaning "not given" unless typed on the command line (see
    :func:`config_from`), so this changes what help shows, never which value wins.
    """
    for _, cmd in walk(root):
        binding = binding_of(cmd)
        if binding is None or binding.config is None:
            continue
        fields = binding.fields()
        for param in cmd.params:
            name = binding.field_for(param.name or "")
            if name not in fields or param.default is not None:
                continue
            value = field_default(binding.config, name)
            if value is None or isinstance(value, dict | list | tuple):
                continue
            param.default = value
            param.show_default = True
