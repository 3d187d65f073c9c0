"""Pretrained weights for registered backbones: where a tag's file comes from, and loading it.

A backbone declares its tags when it registers: ``register_backbone(..., weights={tag: spec})``.
A :class:`WeightsSpec` names the torchvision ``Weights`` enum member or torchaudio pipeline bundle
that publishes the file, and the preprocessing the weights were trained with (clip frames, crop
size, mean/std, sample rate). :func:`resolve_weights` finds the file where torch keeps it,
``$TORCH_HOME/hub/checkpoints/<the URL's file name>`` (:func:`torch.hub.get_dir`), downloading it
there when it is absent and the network answers, so a file copied in by hand works offline.
:func:`load_pretrained` reads a tag's file or a local path with the safe reader of
:mod:`mmkit.io.weights` and loads it, every key checked (one-line :class:`CheckpointError`).

A model may map the file's layout to its own with ``adapt_pretrained(state) -> state``; its
``pretrained_fresh`` lists the key prefixes of its head (classifier, pooling weights), which may
start fresh: a file's head whose class count differs from the model's is left out
(:mod:`mmkit.backbones.base`).
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from mmkit.errors import CheckpointError, UserInputError
from mmkit.io.weights import read_state_dict
from mmkit.registry import BACKBONES

TORCHAUDIO_MODELS_URL = "https://download.pytorch.org/torchaudio/models/"
_HASH = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's file-name hash convention (name-<sha256>.pth)


@dataclass(frozen=True)
class WeightsSpec:
    """One set of pretrained weights and the preprocessing they were trained with.

    ``source`` is ``"module:Attr.path"``: a torchvision ``Weights`` enum member
    (``"torchvision.models.video:R3D_18_Weights.KINETICS400_V1"``) or a torchaudio bundle
    (``"torchaudio.pipelines:HUBERT_BASE"``); the file's URL comes from it. ``frames``, ``size``
    (square crop), ``resize`` (torchvision's resize before the crop), ``mean``/``std`` describe
    clips; ``sample_rate`` the waveform. ``num_classes`` is the size of the classifier the file
    holds (0: none).
    """

    source: str
    frames: int | None = None
    size: int | None = None
    resize: tuple[int, ...] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    sample_rate: int | None = None
    num_classes: int = 0

    def published(self) -> Any:
        """The torchvision ``Weights`` member or torchaudio bundle that ``source`` names."""
        return _published(self.source)

    @property
    def url(self) -> str:
        obj = self.published()
        url = getattr(obj, "url", None) or getattr(obj, "_path", None)
        if not isinstance(url, str):
            raise TypeError(f"{self.source} has no url (a Weights member) or _path (a bundle)")
        return url if url.startswith("https://") else TORCHAUDIO_MODELS_URL + url

    @property
    def file_name(self) -> str:
        return os.path.basename(urlparse(self.url).path)

    def preprocessing(self) -> dict[str, Any]:
        """What the input must look like, under mmkit's config names (``frames``, ``size``,
        ``mean``, ``std``, ``sample_rate``; only those that apply)."""
        values = {
            "frames": self.frames,
            "size": self.size,
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "sample_rate": self.sample_rate,
        }
        return {k: v for k, v in values.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``mmkit list --json`` / ``describe --json`` (imports nothing)."""
        extra = {"resize": list(self.resize)} if self.resize else {}
        return {
            "source": self.source,
            "num_classes": self.num_classes,
            **self.preprocessing(),
            **extra,
        }


@cache
def _published(source: str) -> Any:
    module, _, attrs = source.partition(":")
    obj: Any = importlib.import_module(module)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


def weights_dir() -> Path:
    """Where torch (and so mmkit) keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_spec(backbone: str, tag: str) -> WeightsSpec:
    """The :class:`WeightsSpec` of ``backbone``'s ``tag``; an unknown tag is a one-line
    :class:`UserInputError` listing the known ones."""
    known = BACKBONES.get(backbone).weights
    if tag in known:
        return known[tag]
    if not known:
        raise UserInputError(f"backbone {backbone!r} has no pretrained weights tags (got {tag!r})")
    lower = {k.lower(): k for k in known}  # case aside: "hubert_base" means HUBERT_BASE
    close = difflib.get_close_matches(tag.lower(), list(lower), n=1)
    hint = f" Did you mean {lower[close[0]]!r}?" if close else ""
    raise UserInputError(
        f"backbone {backbone!r} has no pretrained weights {tag!r}.{hint} "
        f"Known tags: {', '.join(known)}"
    )


def resolve_weights(backbone: str, tag: str, *, download: bool = True) -> Path:
    """The local file of ``backbone``'s weights ``tag``: in :func:`weights_dir` under the URL's
    file name; absent, it is downloaded there (hash-checked when the name carries one, as
    torchvision's do). No file and no download is a one-line :class:`UserInputError` naming the
    file, the folder it must go in and the URL."""
    spec = weights_spec(backbone, tag)
    folder = weights_dir()
    path = folder / spec.file_name
    if path.is_file():
        return path
    where = f"pretrained weights {tag!r} of {backbone!r}: {spec.file_name} is not in {folder}"
    if not download:
        raise UserInputError(f"{where}; download it from {spec.url} into that folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        match = _HASH.search(spec.file_name)
        torch.hub.download_url_to_file(
            spec.url, str(path), hash_prefix=match.group(1) if match else None, progress=True
        )
    except Exception as exc:  # URLError offline, HTTPError, a hash mismatch (RuntimeError)...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserInputError(
            f"{where} and downloading it failed ({reason}); download {spec.url} into that folder"
        ) from exc
    return path


@dataclass(frozen=True)
class Loaded:
    """What :func:`load_pretrained` loaded: the file and the model keys it left fresh."""

    path: Path
    fresh: tuple[str, ...]


def load_pretrained(
    model: nn.Module, source: str | os.PathLike[str], *, backbone: str | None = None
) -> Loaded:
    """Load pretrained weights into ``model``: ``source`` is a weights tag of the registered
    ``backbone`` (resolved by :func:`resolve_weights`) or a local state-dict file (safetensors,
    or a torch file read with ``weights_only=True``). Every key must fit (see :func:`load_state`).
    """
    text = os.fspath(source)
    tags = BACKBONES.get(backbone).weights if backbone is not None else {}
    if backbone is not None and (text in tags or not _looks_like_a_path(text)):
        # a tag (an unknown one is refused there, with the known tags)
        path, what = resolve_weights(backbone, text), f"pretrained weights {text!r}"
    else:
        path, what = Path(text), "pretrained weights"
    state = read_state_dict(path, what=what)
    return Loaded(path, load_state(model, state, what=f"{what} {path.name}"))


def _looks_like_a_path(text: str) -> bool:
    return os.sep in text or "/" in text or Path(text).suffix != "" or Path(text).exists()


def load_state(
    model: nn.Module, state: dict[str, torch.Tensor], *, what: str = "weights", adapt: bool = True
) -> tuple[str, ...]:
    """Load ``state`` (``model.adapt_pretrained`` applied first, when it has one and ``adapt``:
    an mmkit checkpoint's keys are the model's own already) into ``model``; return the keys
    left fresh. Keys under ``model.pretrained_fresh`` may be absent,
    and are dropped from the file when their shape differs (a head of another class count);
    any other missing, unexpected or misshapen key is a one-line :class:`CheckpointError`."""
    adapter = getattr(model, "adapt_pretrained", None) if adapt else None
    if adapter is not None:
        state = adapter(state)
    fresh = tuple(getattr(model, "pretrained_fresh", ()))
    own = model.state_dict()
    state = {
        k: v
        for k, v in state.items()
        if not (k.startswith(fresh) and (k not in own or own[k].shape != v.shape))
    }
    missing = sorted(k for k in own.keys() - state.keys() if not k.startswith(fresh))
    unexpected = sorted(state.keys() - own.keys())
    wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    problems = [f"missing {_few(missing)}"] if missing else []
    problems += [f"unexpected {_few(unexpected)}"] if unexpected else []
    if wrong:
        k, more = wrong[0], f" and {len(wrong) - 1} more" if len(wrong) > 1 else ""
        problems.append(
            f"wrong shape {k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} "
            f"in the model{more}"
        )
    if problems:
        raise CheckpointError(f"{what}: does not fit this model ({'; '.join(problems)})")
    model.load_state_dict(state, strict=False)
    return tuple(sorted(own.keys() - state.keys()))


def _few(keys: list[str], limit: int = 3) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
