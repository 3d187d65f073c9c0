"""The checkpoint's ``config.json``: one typed, versioned description of a trained model.

A checkpoint directory holds ``model.safetensors`` and ``config.json``; :class:`CheckpointSpec` is
the only reader and writer of the latter, so no other module indexes it by string keys. A
checkpoint may come from anyone, so :meth:`CheckpointSpec.from_json` checks every field's type
and shape and raises a one-line :class:`~mmkit.errors.CheckpointError` naming the file and the
key; what the plugins it names may receive is checked again when they are built
(:meth:`mmkit.registry.Registry.create_from_config`).

Shape (version 2)::

    {"format_version": 2, "mmkit_version": "0.1.0", "modality": "audio", "task": "classify",
     "backbone": {"name": "audio_cnn", "kwargs": {...}},
     "preprocess": {"input": [{"name": "log_mel", "params": {...}}, ...]},   # classify
                   {"image": [...], "text": [...]},                           # contrastive
     "labels": [...], "prompt": "a photo of a {}" (contrastive),
     "data": {"params": {...}, "fingerprint": str, "dataset": str, "store": str,
              "validation": {...}},
     "train": {...the training config...}, "metrics": {...}, "epoch": n,
     "init": {"kind": "run|tag|file", "source": str, "path": str, "sha256": str,
              "head": "kept|new", "preprocessing": {...} (tag)}}    # --pretrained; {} without

``init`` is provenance only: nothing is ever loaded from what it names.

Version 1 (no ``format_version``; ``preprocess`` a list for classification and a name -> stage
mapping for contrastive models) is read and converted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mmkit.errors import CheckpointError

FORMAT_VERSION = 2
TASKS = {"classify": ("audio", "video"), "contrastive": ("mm",)}
STREAMS = {"classify": ("input",), "contrastive": ("image", "text")}
MAX_CONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Stage:
    """A registered plugin and the arguments that rebuild it."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointSpec:
    """Everything needed to rebuild a checkpoint's model and its input pipeline."""

    modality: str
    task: str
    backbone: Stage
    preprocess: dict[str, list[Stage]]
    labels: list[str]
    data: dict[str, Any]
    train: dict[str, Any]
    prompt: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    mmkit_version: str = ""
    format_version: int = FORMAT_VERSION
    init: dict[str, Any] = field(default_factory=dict)  # where the first weights came from

    # -- typed views of the entries every reader needs ----------------------------------------
    @property
    def data_params(self) -> dict[str, Any]:
        """The decode parameters of the store the model was trained on."""
        return self.data.get("params", {})

    @property
    def fingerprint(self) -> str | None:
        """The training dataset's store fingerprint (eval compares it with its own)."""
        return self.data.get("fingerprint")

    def stages(self, stream: str) -> list[Stage]:
        return self.preprocess.get(stream, [])

    def with_results(self, metrics: dict[str, Any], epoch: int) -> CheckpointSpec:
        return replace(self, metrics=dict(metrics), epoch=int(epoch))

    # -- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["backbone"] = {"name": self.backbone.name, "kwargs": self.backbone.params}
        return out

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, default=str))

    @classmethod
    def read(cls, path: str | Path) -> CheckpointSpec:
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if len(raw) > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB")
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise CheckpointError(f"{path}: invalid JSON ({reason})") from exc
        return cls.from_json(data, source=str(path))

    @classmethod
    def from_json(cls, data: Any, *, source: str = "config.json") -> CheckpointSpec:
        """Check and convert a parsed ``config.json`` (either version)."""
        v = _Check(source)
        data = v.mapping(data, "")
        version = data.get("format_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise v.error("format_version", "must be a positive integer")
        if version > FORMAT_VERSION:
            raise v.error(
                "format_version", f"is {version}: made by a newer mmkit; upgrade to read it"
            )
        task = v.choice(data.get("task"), "task", tuple(TASKS))
        modality = v.choice(data.get("modality"), "modality", TASKS[task])
        backbone = v.mapping(data.get("backbone"), "backbone")
        spec = cls(
            modality=modality,
            task=task,
            backbone=Stage(
                v.string(backbone.get("name"), "backbone.name"),
                v.mapping(backbone.get("kwargs", {}), "backbone.kwargs"),
            ),
            preprocess=_preprocess(v, data.get("preprocess"), task),
            labels=v.labels(data.get("labels", []), "labels", needed=task == "classify"),
            data=v.mapping(data.get("data", {}), "data"),
            train=v.mapping(data.get("train", {}), "train"),
            prompt=v.optional_string(data.get("prompt"), "prompt"),
            metrics=v.mapping(data.get("metrics", {}), "metrics"),
            epoch=v.integer(data.get("epoch", 0), "epoch"),
            mmkit_version=str(data.get("mmkit_version", "")),
            init=v.mapping(data.get("init", {}), "init"),
        )
        v.mapping(spec.data.get("params", {}), "data.params")
        if spec.fingerprint is not None:
            v.string(spec.fingerprint, "data.fingerprint")
        return spec


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _preprocess(v: _Check, value: Any, task: str) -> dict[str, list[Stage]]:
    if value is None:
        raise v.error("preprocess", "is missing")
    if isinstance(value, list) and task == "classify":  # version 1
        value = {"input": value}
    value = v.mapping(value, "preprocess")
    streams: dict[str, list[Stage]] = {}
    for stream in STREAMS[task]:
        stages = value.get(stream)
        if isinstance(stages, dict) and task == "contrastive":  # version 1: one stage each
            stages = [stages]
        if not isinstance(stages, list) or not (stages or task == "classify"):
            # a classifier on the waveform without augmentation has no stage
            raise v.error(f"preprocess.{stream}", "must be a non-empty list of stages")
        streams[stream] = [
            Stage(
                v.string(
                    v.mapping(s, f"preprocess.{stream}[{i}]").get("name"),
                    f"preprocess.{stream}[{i}].name",
                ),
                v.mapping(s.get("params", {}), f"preprocess.{stream}[{i}].params"),
            )
            for i, s in enumerate(stages)
        ]
    extra = sorted(set(value) - set(STREAMS[task]))
    if extra:
        raise v.error(f"preprocess.{extra[0]}", f"is not an input of a {task} model")
    return streams


class _Check:
    """Type checks that raise ``CheckpointError("<file>: <key> ...")``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, problem: str) -> CheckpointError:
        where = f"{self.source}: {key}" if key else self.source
        return CheckpointError(f"{where} {problem}")

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key or "the top level", f"must be a JSON object, got {_kind(value)}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, got {_kind(value)}")
        return value

    def optional_string(self, value: Any, key: str) -> str | None:
        return None if value is None else self.string(value, key)

    def integer(self, value: Any, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.error(key, f"must be a non-negative integer, got {_kind(value)}")
        return value

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {_kind(value)}")
        return value

    def labels(self, value: Any, key: str, *, needed: bool) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise self.error(key, f"must be a list of strings, got {_kind(value)}")
        if needed and not value:
            raise self.error(key, "is empty: a classifier needs at least one class")
        if len(set(value)) != len(value):
            raise self.error(key, "has duplicates")
        return list(value)


def _kind(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__} {text[:37]}..."
