"""What the registry knows about one plugin (:class:`PluginSpec`) and the checks of arguments
handed to its factory: :func:`bind_arguments` for a user's, :func:`check_config_kwargs` for a
checkpoint's ``config.json`` (data, never code). :mod:`mmkit.registry` holds the registries."""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mmkit.errors import CheckpointError, UserInputError


@dataclass(frozen=True)
class PluginSpec:
    """What the registry knows about one plugin."""

    name: str
    kind: str
    modality: str
    factory: Callable[..., Any]
    description: str
    tags: tuple[str, ...] = ()
    module: str = field(default="")
    loads: tuple[str, ...] = ()  # arguments that name a file or tag to load weights from
    input: str | None = None  # backbones: what forward takes (registry.INPUTS)
    weights: Mapping[str, Any] = field(default_factory=dict)  # tag -> WeightsSpec (backbones)
    detect: Callable[..., bool] | None = None  # a layout's test of a path (its factory reads it)
    fallback: bool = False  # a layout tried after every other one (plain folders)

    def signature(self) -> dict[str, str]:
        """Keyword arguments of the factory with their defaults, for ``mmkit describe`` (none for
        a layout: its reader takes the path and the source options)."""
        if self.detect is not None:
            return {}
        params = {}
        for p in inspect.signature(self.factory).parameters.values():
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            params[p.name] = "required" if p.default is p.empty else repr(p.default)
        return params

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "modality": self.modality,
            "description": self.description,
            "tags": list(self.tags),
            "module": self.module,
            "arguments": self.signature(),
            **(self._backbone_dict() if self.kind == "backbone" else {}),
        }

    def _backbone_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "weights": {tag: w.to_dict() for tag, w in self.weights.items()},
        }


def bind_arguments(spec: PluginSpec, kwargs: dict[str, Any]) -> None:
    """Check ``kwargs`` against ``spec``'s factory signature (one line naming the argument)."""
    signature = inspect.signature(spec.factory)
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    where = f"{spec.kind} {spec.name!r}"
    for key in kwargs:
        if key not in params and not takes_any:
            close = difflib.get_close_matches(key, named, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserInputError(
                f"{where}: unexpected keyword argument {key!r}{hint}; it takes {', '.join(named)}"
            )
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise UserInputError(f"{where}: {exc}") from None


# -- what a checkpoint's config may pass to a factory ------------------------------------------
# An argument (at any depth) whose name says it leads to a loader, a file, code or an import.
_LOADER_NAME = re.compile(
    r"pretrain|weights|checkpoint|remote_code|(^|_)(path|paths|file|files|dir|url|uri|jit|"
    r"module|import|class|cls|loader)$",
    re.IGNORECASE,
)
# A string that names a location another library would fetch or open (hf-hub:, local-dir:, ...).
_SCHEMA = re.compile(r"^(hf-hub|hf|local-dir|file|https?|ftp|s3|gs|timm):", re.IGNORECASE)
_MAX_DEPTH, _MAX_NODES, _MAX_STRING = 8, 10_000, 4096


def check_config_kwargs(spec: PluginSpec, kwargs: Any, source: str) -> None:
    """Refuse what a checkpoint must not hand to ``spec``'s factory (:class:`CheckpointError`).

    Allowed: named arguments of the factory (no ``**kwargs`` pass-through), other than those it
    declares in ``loads``, with plain JSON values (numbers, strings, booleans, null, lists and
    string-keyed mappings, bounded in size). Refused at any depth: a key that names a loader, a
    file, code or an import (``pretrained``, ``weights_only``, ``*_path``, ``cache_dir``...)
    with a value other than null/false, and strings with a location schema (``hf-hub:``...).
    """
    where = f"{source}: {spec.kind} {spec.name!r}"
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{where}: arguments must be a mapping, got {type(kwargs).__name__}")
    params = {
        p.name
        for p in inspect.signature(spec.factory).parameters.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    nodes = [0]
    for key, value in kwargs.items():
        if key not in params:
            raise CheckpointError(f"{where} takes no argument {key!r}")
        if key in spec.loads and value not in (None, False, ""):
            raise CheckpointError(f"{where}: {key!r} loads weights; a checkpoint may not set it")
        _check_value(value, key, where, 0, nodes)


def _check_value(value: Any, key: str, where: str, depth: int, nodes: list[int]) -> None:
    nodes[0] += 1
    if depth > _MAX_DEPTH or nodes[0] > _MAX_NODES:
        raise CheckpointError(f"{where}: {key} is nested too deep or too large")
    if _LOADER_NAME.search(key.rsplit(".", 1)[-1]) and value not in (None, False, ""):
        raise CheckpointError(f"{where}: {key} would load a file or code; a checkpoint may not")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CheckpointError(f"{where}: {key} must be a finite number, got {value}")
        return
    if isinstance(value, str):
        if len(value) > _MAX_STRING or _SCHEMA.match(value):
            raise CheckpointError(f"{where}: {key} holds a location or an over-long string")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_value(item, f"{key}[{i}]", where, depth + 1, nodes)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: {key} has a non-string key")
            _check_value(item, f"{key}.{k}", where, depth + 1, nodes)
        return
    raise CheckpointError(f"{where}: {key} must be plain data, got {type(value).__name__}")
