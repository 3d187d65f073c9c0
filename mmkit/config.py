"""Experiment configs: flat dataclasses whose keys are the CLI option names.

A YAML/JSON ``--config FILE`` gives values for the same keys; flags given on the command line win
over it; the dataclass defaults fill the rest. Validation names the bad key or value.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mmkit.errors import UserInputError

C = TypeVar("C", bound="TrainConfig")


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
    num_workers: int = 0
    max_steps_per_epoch: int = 0
    augment: bool = True
    prepared: str | None = None
    hf_config: str | None = None
    label_column: str = "label"

    def validate(self) -> None:
        if not self.dataset:
            raise UserInputError("--dataset is required (a folder, manifest, HF id or alias)")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserInputError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.lr <= 0:
            raise UserInputError(f"--lr must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserInputError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if not 0 <= self.warmup < 1:
            raise UserInputError(f"warmup must be a fraction in [0, 1), got {self.warmup}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_config(cls: type[C], config_file: str | Path | None, overrides: dict[str, Any]) -> C:
    """Defaults < ``config_file`` < ``overrides`` (flags; None means "not given")."""
    values: dict[str, Any] = {}
    if config_file:
        values.update(read_config_file(config_file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = from_dict(cls, values, source=str(config_file or "options"))
    cfg.validate()
    return cfg


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def from_dict(cls: type[C], values: dict[str, Any], *, source: str = "config") -> C:
    """Build ``cls`` from a dict, checking names and types (ints/floats/bools/strings/dicts)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserInputError(f"{source}: unknown option {key!r}{hint}")
        kwargs[key] = _coerce(key, value, hints[key], source)
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint) or hint
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
        return float(value)
    if origin is str:
        return str(value)
    if origin is tuple:
        return tuple(value)
    return value
