"""Where an open_clip model's architecture, preprocessing and weights come from.

``--model`` names an architecture: a built-in open_clip name (``ViT-B-32``), a JSON file (an
open_clip model config, or an ``open_clip_config.json`` with ``model_cfg`` + ``preprocess_cfg``
as the hub stores them) or ``hf-hub:ORG/REPO`` (that repo's ``open_clip_config.json``, and its
weights unless ``--pretrained`` gives others). :func:`resolve_arch` turns each into a plain
architecture name, its config and the preprocessing it ships, so a checkpoint's ``config.json``
never holds a location.

``--pretrained`` names weights: a file, an open_clip tag or ``hf-hub:ORG/REPO``.
:func:`resolve_pretrained` turns each into a local file and the preprocessing the weights were
trained with (a tag's from open_clip's metadata, :func:`tag_preprocess_cfg`, which needs no
download). Fetching goes through ``huggingface_hub`` / ``open_clip.pretrained``; reading the
file is left to :func:`mmkit.io.weights.read_state_dict`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkit.errors import UserInputError
from mmkit.io.image import check_resize

HF_HUB = "hf-hub:"
HUB_CONFIG = "open_clip_config.json"
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")
"""The keys of open_clip's ``PreprocessCfg`` that mmkit follows (the size is the model's)."""
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_OTHER_SCHEMA = re.compile(r"^[A-Za-z][A-Za-z0-9+-]+:")  # local-dir:, https:...; not C:


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _hub_reason(exc: BaseException) -> str:
    """Why a hub download failed, in a few words."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen: BaseException | None = exc
    while seen is not None:  # open_clip wraps the hub's error in its own
        if isinstance(seen, LocalEntryNotFoundError):
            return "the Hugging Face hub is unreachable (offline) and it is not in the local cache"
        seen = seen.__cause__ or seen.__context__
    return _first_line(exc)


def hf_hub_repo(name: str) -> str | None:
    """``ORG/REPO`` of an ``hf-hub:ORG/REPO`` name, None for any other name.

    Raises:
        UserInputError: the name starts with ``hf-hub:`` but the rest is not ``ORG/REPO``.
    """
    if not name.startswith(HF_HUB):
        return None
    repo = name[len(HF_HUB) :]
    parts = repo.split("/")
    if (
        len(parts) != 2
        or not all(_REPO_PART.fullmatch(p) for p in parts)
        or "--" in repo
        or ".." in repo
    ):
        raise UserInputError(f"{name!r} is not a hub model name; expected hf-hub:ORG/REPO")
    return repo


def hub_arch_name(repo: str) -> str:
    """The plain architecture name an ``hf-hub:ORG/REPO`` model is registered under:
    ``ORG--REPO`` (``--`` never occurs in a hub id, so two repos never share a name)."""
    org, name = repo.split("/")
    return f"{org}--{name}"


def clean_preprocess_cfg(cfg: Any, *, source: str = "preprocess_cfg") -> dict[str, Any]:
    """The :data:`PREPROCESS_KEYS` of an open_clip preprocess config as plain, checked JSON
    values (others, such as ``size``, are dropped; ``interpolation: random`` is bicubic, as in
    open_clip's eval transform)."""
    if not isinstance(cfg, dict):
        raise UserInputError(f"{source} must be a mapping, got {type(cfg).__name__}")
    out: dict[str, Any] = {}
    for key in ("mean", "std"):
        if cfg.get(key) is None:
            continue
        value = cfg[key]
        value = [value] * 3 if isinstance(value, int | float) else value
        ok = isinstance(value, list | tuple) and len(value) == 3
        if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise UserInputError(f"{source}.{key} must be three numbers, got {value!r}")
        out[key] = [float(v) for v in value]
    if cfg.get("interpolation") is not None:
        interp = cfg["interpolation"]
        out["interpolation"] = "bicubic" if interp == "random" else interp
    for key in ("resize_mode", "fill_color"):
        if cfg.get(key) is not None:
            out[key] = cfg[key]
    try:
        check_resize(
            out.get("resize_mode", "shortest"),
            out.get("interpolation", "bicubic"),
            out.get("fill_color", 0),
        )
    except UserInputError as exc:
        raise UserInputError(f"{source}: {exc}") from None
    return out


def tag_preprocess_cfg(name: str, tag: str) -> dict[str, Any]:
    """The preprocessing open_clip's metadata records for architecture ``name`` with pretrained
    ``tag`` (``{}`` for an unknown pair). Nothing is downloaded, so a test can build "``name``
    with ``tag``'s preprocessing" from random weights."""
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(name, tag)
    return clean_preprocess_cfg(cfg, source=f"open_clip {name!r} tag {tag!r}") if cfg else {}


def read_open_clip_config(data: Any, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config, preprocess config) of an open_clip model config or of an
    ``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": ...}``)."""
    if not isinstance(data, dict):
        raise UserInputError(f"{source}: an open_clip config must be a JSON object")
    if "model_cfg" not in data:
        return data, {}
    model_cfg = data["model_cfg"]
    if not isinstance(model_cfg, dict):
        raise UserInputError(f"{source}: model_cfg must be a JSON object")
    preprocess = clean_preprocess_cfg(data.get("preprocess_cfg") or {}, source=source)
    return model_cfg, preprocess


def fetch_hub_file(repo: str, filename: str) -> str:
    """A file of hub repo ``repo`` in the local cache (downloaded when online), or one line."""
    from huggingface_hub import hf_hub_download

    from mmkit.io.hub import hub_offline_reason

    hub_offline_reason()  # no network: offline mode, so the cache answers at once (no retries)
    try:
        return hf_hub_download(repo_id=repo, filename=filename)
    except Exception as exc:  # offline, missing repo or file, HTTP errors: many types
        raise UserInputError(
            f"hf-hub:{repo}: cannot fetch {filename} ({_hub_reason(exc)})"
        ) from exc


def hub_config(repo: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config, preprocess config) from hub repo ``repo``'s ``open_clip_config.json``."""
    path = fetch_hub_file(repo, HUB_CONFIG)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"hf-hub:{repo}: unreadable {HUB_CONFIG} ({exc})") from exc
    model_cfg, preprocess = read_open_clip_config(data, f"hf-hub:{repo} {HUB_CONFIG}")
    if model_cfg is data:
        raise UserInputError(f"hf-hub:{repo}: {HUB_CONFIG} has no model_cfg")
    return model_cfg, preprocess


@dataclass(frozen=True)
class OpenClipArch:
    """What ``--model`` resolves to.

    Attributes:
        name: a plain architecture name (built-in, or the one ``model_kwargs`` is registered as).
        model_kwargs: the architecture config (None: the built-in one, as is).
        preprocess_cfg: the preprocessing the source ships (``{}``: the tag's or the default).
        weights: the ``--pretrained`` to use when none is given (hub models: their repo).
    """

    name: str
    model_kwargs: dict[str, Any] | None = None
    preprocess_cfg: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None


def resolve_arch(model: str, model_kwargs: dict[str, Any] | None = None) -> OpenClipArch:
    """``--model``: a built-in name (``model_kwargs`` override its config), a JSON file or
    ``hf-hub:ORG/REPO`` (fetched; offline and not cached it fails with one line)."""
    repo = hf_hub_repo(model)
    if repo is not None:
        model_cfg, preprocess = hub_config(repo)
        return OpenClipArch(hub_arch_name(repo), model_cfg, preprocess, f"{HF_HUB}{repo}")
    if _OTHER_SCHEMA.match(model):
        raise UserInputError(
            f"--model {model!r}: give a built-in open_clip name, hf-hub:ORG/REPO or a JSON file "
            f"(for a local model folder: its {HUB_CONFIG}, with the weights as --pretrained)"
        )
    if model.endswith(".json"):
        path = Path(model).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"cannot read open_clip model config {model}: {exc}") from exc
        model_cfg, preprocess = read_open_clip_config(data, model)
        name = path.resolve().parent.name if path.name == HUB_CONFIG else path.stem
        return OpenClipArch(name, model_cfg, preprocess)
    return OpenClipArch(model, model_kwargs)


def resolve_pretrained(
    name: str, pretrained: str, cache_dir: str | None = None
) -> tuple[str, dict[str, Any]]:
    """(local weights file, the preprocessing they were trained with) for a file path, an
    open_clip tag of architecture ``name`` or ``hf-hub:ORG/REPO``; fetching fails with one line.
    """
    from open_clip.pretrained import (
        download_pretrained,
        download_pretrained_from_hf,
        get_pretrained_cfg,
    )

    repo = hf_hub_repo(pretrained)
    if repo is not None:
        _, preprocess = hub_config(repo)
        try:
            return download_pretrained_from_hf(repo, cache_dir=cache_dir), preprocess
        except Exception as exc:  # FileNotFoundError wrapping the hub's error
            raise UserInputError(
                f"hf-hub:{repo}: cannot fetch its weights ({_hub_reason(exc)})"
            ) from exc
    tag_cfg = get_pretrained_cfg(name, pretrained)
    if tag_cfg:
        from mmkit.io.hub import hub_offline_reason

        hub_offline_reason()  # no network: fail (or use the cache) at once, without retries
        try:
            path = download_pretrained(tag_cfg, cache_dir=cache_dir)
        except Exception as exc:  # huggingface_hub / urllib raise many types offline
            raise UserInputError(
                f"open_clip {name!r}: cannot fetch pretrained={pretrained!r} ({_hub_reason(exc)})"
            ) from exc
        return path, tag_preprocess_cfg(name, pretrained)
    if os.path.isfile(pretrained):
        return pretrained, {}
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    raise UserInputError(
        f"open_clip {name!r}: pretrained={pretrained!r} is not a known tag or valid file path"
        + (f" (tags: {', '.join(tags)})" if tags else "")
    )
