"""Fine-tuning: where a classification run's first weights come from (``--pretrained``) and what
trains (``--freeze``, ``--backbone-lr-scale``: :mod:`mmkit.engine.optim`).

:func:`plan` reads ``--pretrained SOURCE`` before the run starts, so a bad source is one line
before any data is prepared. SOURCE is, in this order:

- an mmkit run or checkpoint directory (kind ``run``): of the same modality, with the same
  backbone and backbone kwargs (taken from it when not given, refused when given otherwise);
  the options that shape the features (:data:`FEATURE_KEYS`) are inherited from its training
  config, and one the user gave otherwise is refused. Its backbone weights are loaded, and its
  head too when the labels are the same list (a new head when they differ);
- a weights tag of the backbone (kind ``tag``, ``kinetics400``, ``HUBERT_BASE``): its file, from
  the torch hub cache or downloaded (:func:`~mmkit.backbones.pretrained.resolve_weights`); the
  preprocessing the weights were trained with becomes the default of every option not given;
- a local weights file (kind ``file``): safetensors, or a torch state dict read with
  ``weights_only=True`` (:func:`~mmkit.io.weights.read_state_dict`), every key checked.

:func:`apply` loads the weights into the built job's backbone (not on ``--resume``: the run's
own ``last/`` is loaded then), freezes the backbone for ``--freeze backbone``, and records in
the checkpoint's ``init`` where the weights came from. That record is provenance only: ``eval``
and ``infer`` rebuild the model from the checkpoint's own weights and never read it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmkit.backbones.pretrained import load_state, resolve_weights, weights_spec
from mmkit.config import from_dict
from mmkit.configs import ClassifyConfig
from mmkit.engine.run import Job
from mmkit.errors import UserInputError
from mmkit.events import Progress
from mmkit.io.checkpoint_dir import MODEL_FILE, read_spec, resolve_checkpoint_dir
from mmkit.io.files import path_exists, regular_file, short_path
from mmkit.io.weights import read_safetensors, read_state_dict
from mmkit.registry import BACKBONES

# the options that shape what a backbone sees: a run started from another inherits them
FEATURE_KEYS = {
    "audio": ("sample_rate", "duration", "n_mels", "n_fft", "win_length", "hop_length", "f_min",
              "f_max", "top_db"),
    "video": ("frames", "size", "mean", "std"),
}  # fmt: skip


@dataclass(frozen=True)
class Start:
    """A resolved ``--pretrained``: what :func:`apply` loads."""

    kind: str  # "run" | "tag" | "file"
    source: str  # as given
    path: Path  # the checkpoint directory or the weights file
    labels: tuple[str, ...] = ()  # run: the source's labels
    preprocessing: dict[str, Any] = field(default_factory=dict)  # tag: what it was trained with
    state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def what(self) -> str:
        return f"--pretrained {short_path(self.path, 120)}"

    def read(self) -> Start:
        """This start with its tensors read (a run's backbone part), so a file that is not
        weights is refused before any data is prepared."""
        if self.kind != "run":
            return replace(self, state=read_state_dict(self.path, what=self.what))
        state = read_safetensors(self.path / MODEL_FILE, what=self.what)
        prefix = "backbone."
        state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        return replace(self, state=state)

    def load(self, backbone: nn.Module, labels: list[str]) -> tuple[str, ...]:
        """Load the weights into ``backbone``; the keys left fresh (the head, when new)."""
        if self.kind != "run":
            return load_state(backbone, self.state, what=self.what)
        state = self.state
        if list(labels) != list(self.labels):  # other classes: the head starts fresh
            head = tuple(getattr(backbone, "pretrained_fresh", ()))
            state = {k: v for k, v in state.items() if not k.startswith(head)}
        return load_state(backbone, state, what=self.what, adapt=False)

    def record(self, fresh: tuple[str, ...]) -> dict[str, Any]:
        """The checkpoint's ``init``: where the weights came from (provenance only)."""
        file = self.path / MODEL_FILE if self.kind == "run" else self.path
        out = {"kind": self.kind, "source": self.source, "path": str(self.path)}
        out |= {"sha256": _sha256(file), "head": "new" if fresh else "kept"}
        return out | ({"preprocessing": self.preprocessing} if self.preprocessing else {})


def plan(
    modality: str, cfg: ClassifyConfig, progress: Progress, *, resume: bool = False
) -> tuple[ClassifyConfig, Start | None]:
    """``cfg`` as the run will use it (inherited or default options filled in) and the start
    that ``cfg.pretrained`` names, its weights read (not to ``resume``: the run's own are
    loaded then); None without one. A bad source is one line."""
    cfg, start = _resolve(modality, cfg, progress)
    return cfg, start.read() if start is not None and not resume else start


def _resolve(
    modality: str, cfg: ClassifyConfig, progress: Progress
) -> tuple[ClassifyConfig, Start | None]:
    text = cfg.pretrained
    if not text:
        return cfg, None
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_run(modality, cfg, path)
    spec = BACKBONES.get(cfg.backbone)
    if text in spec.weights:
        weights = weights_spec(cfg.backbone, text)
        start = Start("tag", text, resolve_weights(cfg.backbone, text), (), weights.preprocessing())
        return _tag_defaults(cfg, start, progress), start
    if path_exists(path) or _looks_like_a_path(text):
        return cfg, Start("file", text, regular_file(path, "--pretrained"))
    if spec.weights:
        weights_spec(cfg.backbone, text)  # not one of its tags: "did you mean", the known ones
    raise UserInputError(
        f"--pretrained {text!r} is not a run directory, a weights file or a weights tag "
        f"(backbone {cfg.backbone!r} has no tags)"
    )


def apply(job: Job, cfg: ClassifyConfig, start: Start | None, *, resume: bool) -> Job:
    """Load ``start``'s weights into the job's model (not on ``resume``), freeze its backbone
    for ``--freeze backbone``, and record ``init`` in the checkpoints it will write."""
    model = job.model
    init: dict[str, Any] = {}
    if start is not None and resume:  # the run's own weights come next: keep its first record
        last = Path(cfg.out) / "last"
        init = read_spec(last).init if path_exists(last) else {}
    elif start is not None:
        init = start.record(start.load(model.backbone, job.spec.labels))
        start.state.clear()  # loaded: the model holds them now
    if cfg.freeze == "backbone":
        model.freeze_backbone()
    return replace(job, spec=replace(job.spec, init=init)) if init else job


def _from_run(modality: str, cfg: ClassifyConfig, path: Path) -> tuple[ClassifyConfig, Start]:
    ckpt = resolve_checkpoint_dir(path)
    spec = read_spec(ckpt)
    where = f"--pretrained {short_path(path, 120)}"
    if spec.modality != modality or spec.task != "classify":
        raise UserInputError(
            f"{where} is a {spec.modality} {spec.task} checkpoint, not {modality} classification"
        )
    given = cfg.given()
    name, kwargs = spec.backbone.name, spec.backbone.params
    if "backbone" in given and cfg.backbone != name:
        raise UserInputError(
            f"{where} holds backbone {name!r}, not {cfg.backbone!r}: its weights fit "
            f"{name!r} only (leave --backbone out to use it)"
        )
    if "backbone_kwargs" in given and _plain(cfg.backbone_kwargs) != _plain(kwargs):
        key = next(
            k for k in sorted({*cfg.backbone_kwargs, *kwargs})
            if _plain(cfg.backbone_kwargs.get(k)) != _plain(kwargs.get(k))
        )  # fmt: skip
        raise UserInputError(
            f"backbone_kwargs.{key} is {_text(cfg.backbone_kwargs.get(key))} here but "
            f"{_text(kwargs.get(key))} in {where}: its weights fit its own backbone kwargs "
            "(leave backbone_kwargs out)"
        )
    inherited: dict[str, Any] = {"backbone": name, "backbone_kwargs": kwargs}
    for key in FEATURE_KEYS[modality]:
        if key not in spec.train:
            continue
        mine, theirs = getattr(cfg, key), spec.train[key]
        if key in given and _plain(mine) != _plain(theirs):
            raise UserInputError(
                f"{key} {_text(mine)} conflicts with {where}: it was trained with {key} "
                f"{_text(theirs)}, and the options that shape the features come from it "
                f"(leave {key} out)"
            )
        inherited[key] = theirs
    start = Start("run", str(path), ckpt, tuple(spec.labels))
    return _with(cfg, inherited, f"{where}: config.json: train"), start


def _tag_defaults(cfg: ClassifyConfig, start: Start, progress: Progress) -> ClassifyConfig:
    """The tag's preprocessing as the default of every option the user did not give; a given
    one that differs is kept, with a note."""
    given, values = cfg.given(), {}
    for key, value in start.preprocessing.items():
        if not hasattr(cfg, key):
            continue
        if key not in given:
            values[key] = value
        elif _plain(getattr(cfg, key)) != _plain(value):
            progress.message(
                f"note: {key} {_text(getattr(cfg, key))} differs from the {_text(value)} that "
                f"--pretrained {start.source} was trained with"
            )
    return _with(cfg, values, f"--pretrained {start.source}")


def _with(cfg: ClassifyConfig, values: dict[str, Any], where: str) -> ClassifyConfig:
    """``cfg`` with ``values`` (checked as config values), still knowing what the user gave."""
    if not values:
        return cfg
    new = from_dict(type(cfg), {**cfg.to_dict(), **values}, source=where)
    new._given = cfg.given()
    new.validate()
    return new


def _looks_like_a_path(text: str) -> bool:
    return "/" in text or "\\" in text or Path(text).suffix != ""


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _text(value: Any) -> str:
    return json.dumps(value)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
