"""Experiment configs: flat dataclasses whose keys are the CLI option names.

Where a value comes from, lowest to highest precedence:

    dataclass defaults < ``--config FILE`` (YAML/JSON) < ``--set key=value`` < explicit flags

``--set`` reaches every key, dotted for the inside of a mapping (``backbone_kwargs.width=64``).
Validation names the bad key or value. This module imports no torch, so the CLI can show the
per-modality defaults in ``--help`` without loading it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mmkit.errors import UserInputError
from mmkit.io.files import file_problem, short_path

C = TypeVar("C", bound="TrainConfig")


LIMITS: dict[str, tuple[int, int]] = {
    "epochs": (1, 1_000_000),
    "batch_size": (1, 1_000_000),
    "patience": (0, 1_000_000),
    "max_steps_per_epoch": (0, 10**12),
    "num_workers": (0, 256),
    "prepare_workers": (1, 256),
    "threads": (0, 1024),
    "seed": (-(2**63), 2**63 - 1),  # what torch.manual_seed takes
}
"""The range of each integer option: a value outside is one line, not an overflow deep in
torch or a run that never ends."""


@dataclass
class TrainConfig:
    """Options shared by every modality's ``train``."""

    dataset: str = ""
    out: str = "runs/default"
    backbone: str = ""
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    grad_clip: float = 5.0
    patience: int = 8
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int | None = None  # DataLoader workers; None: auto (see engine.trainer)
    threads: int = 0  # torch intra-op threads; 0: torch's default (one per core)
    compile: bool = False  # torch.compile the model for training
    channels_last: bool = False  # channels-last memory format for conv weights and inputs
    max_steps_per_epoch: int = 0
    dist_timeout: float = 60.0  # torchrun: seconds to wait for a rank that stopped answering
    augment: bool = True
    logger: str = "auto"
    prepared: str | None = None
    prepare_workers: int | None = None  # prepare's decoding workers; None: min(8, cores)
    hf_config: str | None = None
    label_column: str = "label"

    def validate(self) -> None:
        if not self.dataset:
            raise UserInputError("--dataset is required (a folder, manifest, HF id or alias)")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                option = f"--{name.replace('_', '-')}"
                raise UserInputError(
                    f"{option} must be >= {low}, got {value}"
                    if value < low
                    else f"{option} must be at most {high:,}, got {value:,}"
                )
        if self.lr <= 0:
            raise UserInputError(f"--lr must be > 0, got {self.lr}")
        if not 0 < self.dist_timeout <= 86_400:
            raise UserInputError(
                f"dist_timeout must be in (0, 86400] seconds, got {self.dist_timeout}"
            )
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise UserInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserInputError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if not 0 <= self.warmup < 1:
            raise UserInputError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if self.logger not in ("auto", "tensorboard", "csv", "none"):
            raise UserInputError(
                f"--logger must be auto, tensorboard, csv or none, got {self.logger!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def given(self) -> frozenset[str]:
        """The keys the user set: in a ``--config`` file, with ``--set`` or a flag (as
        :func:`build_config` recorded them, even where the value equals the default); for a
        config built in code, the keys whose value differs from the default."""
        recorded = getattr(self, "_given", None)
        if recorded is not None:
            return recorded
        return frozenset(
            f.name for f in dataclasses.fields(self) if getattr(self, f.name) != _default(f)
        )


def build_config(
    cls: type[C],
    config_file: str | Path | None,
    overrides: dict[str, Any],
    sets: Sequence[str] = (),
) -> C:
    """Defaults < ``config_file`` < ``sets`` (``key=value``) < ``overrides`` (flags given;
    None means "not given")."""
    values = read_config_file(config_file) if config_file else {}
    sources = dict.fromkeys(values, str(config_file))
    for key, value in parse_sets(cls, sets, values).items():
        values[key] = value
        sources[key] = "--set"
    for key, value in overrides.items():
        if value is not None:
            values[key] = value
            sources[key] = "options"
    cfg = from_dict(cls, values, source=str(config_file or "options"), sources=sources)
    cfg._given = frozenset(sources)  # what TrainConfig.given() answers
    cfg.validate()
    return cfg


def parse_sets(cls: type, items: Sequence[str], base: dict[str, Any]) -> dict[str, Any]:
    """``--set key=value`` items as ``{field: value}`` on top of ``base`` (the file's values).

    A dotted key sets an entry inside a mapping field (``backbone_kwargs.width=64``), keeping the
    mapping's other entries. Values are YAML (``3``, ``0.1``, ``[0, 20]``, ``null``), except for a
    string field, which takes the text as written.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        path = [part.strip().replace("-", "_") for part in key.split(".")]
        if not sep or not all(path):
            raise UserInputError(f"--set expects key=value, got {item!r}")
        name = path[0]
        if name not in fields:
            raise UserInputError(f"--set: unknown key {name!r}{_did_you_mean(name, fields)}")
        if len(path) == 1:
            out[name] = _parse_value(text, hints[name])
            continue
        if _origin(hints[name]) is not dict:
            raise UserInputError(f"--set: {name} is not a mapping, so {key!r} cannot be set")
        current = out.get(name, base.get(name, _default(fields[name])))
        mapping = copy.deepcopy(current) if isinstance(current, dict) else {}
        node = mapping
        for part in path[1:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = _parse_value(text, None)
        out[name] = mapping
    return out


def _parse_value(text: str, hint: Any) -> Any:
    stripped = text.strip()
    if stripped in ("null", "~") and hint is not None and _optional(hint):
        return None
    if hint is not None and _origin(hint) is str:
        return text
    try:
        return yaml.safe_load(stripped) if stripped else ""
    except yaml.YAMLError:
        return text


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def field_default(cls: type, name: str) -> Any:
    """The default value of one config field (a fresh copy for mutable defaults)."""
    return _default({f.name: f for f in dataclasses.fields(cls)}[name])


MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_VALUES = 100_000  # scalars and containers, counted as the tree YAML aliases expand to
MAX_CONFIG_DEPTH = 32


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML/JSON experiment file as ``{option: value}``, bounded: at most 1 MiB of text and
    100,000 values once YAML aliases are expanded (an alias bomb is one line, not 4 GB)."""
    path = Path(path)
    problem = file_problem(path)
    if problem == "no such file":
        raise UserInputError(f"config file not found: {short_path(path)}")
    if problem is not None:
        raise UserInputError(f"config file {short_path(path)}: {problem}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserInputError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserInputError(f"{path}: not a UTF-8 text file") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a mapping of option names to values")
    check_plain(data, str(path))
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def check_plain(data: Any, source: str, key: str = "") -> None:
    """Refuse config data that is not small plain data: more than :data:`MAX_CONFIG_VALUES`
    values as the tree that YAML aliases expand to, deeper than :data:`MAX_CONFIG_DEPTH`,
    non-finite numbers, NUL characters, or YAML-only types (dates, sets, bytes)."""
    count = 0
    top = f"{key} " if key else ""
    stack: list[tuple[Any, str, int]] = [(data, key, 0)]
    while stack:
        value, key, depth = stack.pop()
        count += 1
        where = f"{source}: {key}" if key else source
        if count > MAX_CONFIG_VALUES or depth > MAX_CONFIG_DEPTH:
            raise UserInputError(
                f"{source}: {top}expands to more than {MAX_CONFIG_VALUES:,} values or "
                f"{MAX_CONFIG_DEPTH} levels (YAML aliases?)"
            )
        if isinstance(value, dict):
            stack.extend((v, f"{key}.{k}" if key else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"{where} must be a finite number, got {value}")
        elif isinstance(value, str) and "\x00" in value:
            raise UserInputError(f"{where} contains a NUL character")
        elif value is not None and not isinstance(value, bool | int | float | str):
            raise UserInputError(f"{where}: {type(value).__name__} values are not allowed")


def from_dict(
    cls: type[C],
    values: dict[str, Any],
    *,
    source: str = "config",
    sources: dict[str, str] | None = None,
) -> C:
    """Build ``cls`` from a dict, checking names and types (ints/floats/bools/strings/dicts).

    Errors name ``sources[key]`` (where that key came from) when given, else ``source``.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        where = (sources or {}).get(key, source)
        check_plain(value, where, key)
        if key not in fields:
            raise UserInputError(f"{where}: unknown option {key!r}{_did_you_mean(key, fields)}")
        kwargs[key] = _coerce(key, value, hints[key], where)
    return cls(**kwargs)


def _optional(hint: Any) -> bool:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return union and type(None) in typing.get_args(hint)


def _origin(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    if value is None and _optional(hint):
        return None
    origin = _origin(hint)
    if origin is float and isinstance(value, str):
        value = _float_text(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, (str, int, float)) and not isinstance(value, bool),
        dict: isinstance(value, dict),
        list: isinstance(value, (list, tuple)),
        tuple: isinstance(value, (list, tuple)),
    }.get(origin, True)
    if not ok:
        name = getattr(origin, "__name__", str(origin))
        raise UserInputError(f"{source}: {key} must be {name}, got {value!r}")
    if origin is float:
        if not math.isfinite(value):
            raise UserInputError(f"{source}: {key} must be a finite number, got {value}")
        return float(value)
    if origin is str:
        return str(value)
    if origin is tuple:
        return _coerce_tuple(key, value, hint, source)
    return value


def _float_text(text: str) -> float | str:
    """``text`` as a number when it is one in Python's spelling (``1e-3``), else unchanged."""
    try:
        return float(text)
    except ValueError:
        return text


def _coerce_tuple(key: str, value: Any, hint: Any, source: str) -> tuple:
    """``tuple[float, float]``: the right length, each item a number."""
    if _optional(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    inner = typing.get_args(hint)
    if inner and Ellipsis not in inner:
        numeric = all(a is float for a in inner)
        ok = len(value) == len(inner) and (
            not numeric
            or all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )
        if ok and numeric:
            ok = all(math.isfinite(v) for v in value)
        if not ok:
            raise UserInputError(
                f"{source}: {key} must be {len(inner)} finite numbers, got {list(value)!r}"
            )
        return tuple(float(v) for v in value) if numeric else tuple(value)
    return tuple(value)
