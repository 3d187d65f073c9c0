"""Any open_clip architecture behind the ClipLite interface (``open_clip_model``).

:func:`create_open_clip` has open_clip build the architecture (no weights) and wraps it in
:class:`OpenClipModel`, which has ClipLite's ``encode_image`` / ``encode_text`` / ``forward``
plus the model's own tokenizer and image preprocessing (size, resize mode, interpolation, mean,
std), so ``mm sim``, ``mm eval`` and fine-tuning work with it unchanged. ``pretrained`` is a
local weights file (``.safetensors``, ``.bin``, ``.pt``; works offline), a tag from
``open_clip.list_pretrained()`` or ``hf-hub:ORG/REPO`` (downloaded, so it needs the network or a
warm cache; see :mod:`mmkit.backbones.open_clip_sources`); a tag or hub model brings the
preprocessing its weights were trained with, ``preprocess_cfg`` overrides it.

When rebuilding from an mmkit checkpoint pass ``pretrained=None``: the architecture is created
with random weights and the checkpoint's ``model.safetensors`` then fills it; ``preprocess_cfg``
(saved in the checkpoint) keeps the preprocessing of the weights training started from.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mmkit.backbones.clip_base import MAX_LOGIT_SCALE, ClipModel
from mmkit.backbones.open_clip_sources import clean_preprocess_cfg, resolve_pretrained
from mmkit.errors import UserInputError
from mmkit.io.weights import read_state_dict
from mmkit.registry import register_backbone


class OpenClipModel(ClipModel):
    """An open_clip ``CLIP`` / ``CustomTextCLIP`` with ClipLite's interface.

    Attributes:
        model: the wrapped open_clip model (its state dict keys are prefixed ``model.``).
        name: the open_clip architecture name.
        embed_dim: size of the shared image-text embedding (``num_features``).
        image_size, image_mean, image_std: the model's own preprocessing, with
        resize_mode, interpolation, fill_color: how an image is fitted into ``image_size``
            (:func:`mmkit.io.image.resize_image`, as open_clip's eval transform).
        context_length: tokens per caption the text tower expects.
        tokenizer: the open_clip tokenizer object for this architecture.
        config: the ``open_clip_model`` kwargs that rebuild it, weights aside (set by
            :func:`create_open_clip`).
    """

    config: dict[str, Any] | None = None

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        embed_dim: int,
        context_length: int,
        max_logit_scale: float = MAX_LOGIT_SCALE,
    ) -> None:
        super().__init__()
        self.model = model
        self.name = name
        cfg = model.visual.preprocess_cfg
        size = cfg["size"]
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        if sizes[0] != sizes[1]:
            raise UserInputError(f"open_clip model {name!r} expects non-square images {sizes}")
        self.image_size = int(sizes[0])
        self.image_mean = tuple(float(v) for v in cfg["mean"])
        self.image_std = tuple(float(v) for v in cfg["std"])
        resize = clean_preprocess_cfg(cfg, source=f"open_clip model {name!r}")
        self.resize_mode = str(resize.get("resize_mode", "shortest"))
        self.interpolation = str(resize.get("interpolation", "bicubic"))
        self.fill_color = int(resize.get("fill_color", 0))
        self.context_length = int(context_length)
        self.max_logit_scale = float(max_logit_scale)
        self.embed_dim = int(embed_dim)
        self.num_features = self.embed_dim
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """``open_clip.get_tokenizer(name, context_length)``, built on first use."""
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.name, context_length=self.context_length)
        return self._tokenizer

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``float [B, 3, image_size, image_size]`` normalised with image_mean/std."""
        return self.model.encode_image(images, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``LongTensor [N, context_length]`` from :attr:`tokenizer` (or ``clip_tokenizer``)."""
        return self.model.encode_text(tokens, normalize=normalize)

    @property
    def image_resize(self) -> dict[str, Any]:
        """How images are fitted into ``image_size`` when decoded (the prepared store's params,
        :func:`mmkit.io.image.load_image_array`'s keywords)."""
        return {
            "resize_mode": self.resize_mode,
            "interpolation": self.interpolation,
            "fill_color": self.fill_color,
        }

    @property
    def preprocess_cfg(self) -> dict[str, Any]:
        """The preprocessing as open_clip ``PreprocessCfg`` keys (size aside): what the
        ``preprocess_cfg`` argument takes to rebuild this model with the same preprocessing."""
        return {"mean": list(self.image_mean), "std": list(self.image_std), **self.image_resize}

    @property
    def tokenizer_name(self) -> str:  # type: ignore[override]
        return self.name


_ARCH_KEYS = frozenset(
    {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text", "init_logit_scale",
     "init_logit_bias", "nonscalar_logit_scale"}
)  # fmt: skip
# keys of a tower config that make open_clip, timm or transformers load weights on their own
_TOWER_LOADERS = frozenset({"timm_model_pretrained", "hf_model_pretrained"})


def check_arch(model_kwargs: Any, *, source: str = "model_kwargs") -> dict[str, Any]:
    """``model_kwargs`` as open_clip architecture overrides, or :class:`UserInputError`.

    Only the keys of an open_clip model config are accepted (``embed_dim``, ``vision_cfg``,
    ``text_cfg``, ...), and inside the tower configs only their dataclass fields, without the
    flags that make a tower fetch weights itself: weights come from ``pretrained`` alone, through
    :func:`mmkit.io.weights.read_state_dict`.
    """
    from dataclasses import fields

    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    if not isinstance(model_kwargs, dict):
        raise UserInputError(f"{source} must be a mapping, got {type(model_kwargs).__name__}")
    for key, value in model_kwargs.items():
        if key not in _ARCH_KEYS:
            raise UserInputError(
                f"{source}: {key!r} is not an open_clip architecture key "
                f"({', '.join(sorted(_ARCH_KEYS))})"
            )
        tower = {"vision_cfg": CLIPVisionCfg, "text_cfg": CLIPTextCfg}.get(key)
        if tower is None:
            continue
        if not isinstance(value, dict):
            raise UserInputError(f"{source}.{key} must be a mapping")
        bad = sorted(set(value) - {f.name for f in fields(tower)})
        if bad:
            raise UserInputError(f"{source}.{key}: {bad[0]!r} is not an open_clip {key} key")
        loads = sorted(k for k in _TOWER_LOADERS if value.get(k))
        if loads:
            raise UserInputError(
                f"{source}.{key}.{loads[0]}: towers never fetch weights themselves; "
                "give the weights with --pretrained"
            )
    return dict(model_kwargs)


def load_open_clip_state(
    model: nn.Module, state: dict[str, torch.Tensor], *, weights: str, arch: str
) -> None:
    """Load a state dict into an open_clip model the way ``open_clip.load_checkpoint`` would
    (its own converters for third-party and old layouts, resized position embeddings), strictly,
    from tensors read by mmkit rather than from a path open_clip would open itself.

    Raises:
        UserInputError: one line naming the weights file and the architecture ``arch`` when
            they do not fit (missing or unexpected keys, other shapes), whatever open_clip's
            converters raised on the way (assertions included).
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import (
        convert_to_custom_text_state_dict,
        resize_pos_embed,
        resize_text_pos_embed,
    )

    state = dict(state)
    try:
        state = convert_state_dict(model, state)
        if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
            state = convert_to_custom_text_state_dict(state)
        for key in ("logit_scale", "logit_bias"):
            own = getattr(model, key, None)
            if key in state and own is not None and own.ndim != state[key].ndim:
                state[key] = state[key].reshape(own.shape)
        if "logit_bias" not in state and getattr(model, "logit_bias", None) is not None:
            state["logit_bias"] = torch.zeros_like(model.logit_bias)
        state.pop("text.transformer.embeddings.position_ids", None)
        resize_pos_embed(state, model)
        resize_text_pos_embed(state, model)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # open_clip's converters assert, reshape and index on the way
        own = model.state_dict()
        missing = sorted(own.keys() - state.keys())
        unexpected = sorted(state.keys() - own.keys())
        wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
        if wrong:
            key = wrong[0]
            detail = f"{key} is {tuple(state[key].shape)}, the model's {tuple(own[key].shape)}"
            detail += f"; {len(wrong) - 1} more tensors of other shapes" if len(wrong) > 1 else ""
        elif missing or unexpected:
            detail = f"missing {missing[:2]}, unexpected {unexpected[:2]}"
        else:
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserInputError(
            f"pretrained weights {weights} do not fit open_clip architecture {arch!r} ({detail})"
        ) from exc


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """Silence open_clip's root-logger warnings and infos for the duration of a call."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def create_open_clip(
    name: str,
    pretrained: str | None = None,
    *,
    force_image_size: int | None = None,
    force_context_length: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    preprocess_cfg: dict[str, Any] | None = None,
    cache_dir: str | None = None,
) -> OpenClipModel:
    """Build open_clip architecture ``name`` with weights from ``pretrained`` (a file, a tag or
    ``hf-hub:ORG/REPO``).

    ``model_kwargs`` override the architecture config (``embed_dim``, ``vision_cfg``,
    ``text_cfg``...; see :func:`check_arch`). The image preprocessing is open_clip's default,
    then what the tag or hub repo of ``pretrained`` records, then ``preprocess_cfg`` (open_clip
    ``PreprocessCfg`` keys: ``mean``, ``std``, ``interpolation``, ``resize_mode``,
    ``fill_color``); so ``create_open_clip(name, preprocess_cfg=tag_preprocess_cfg(name, tag))``
    is ``name`` with ``tag``'s preprocessing and random weights. open_clip only builds the
    architecture: the weights are read by :func:`mmkit.io.weights.read_state_dict` and loaded by
    :func:`load_open_clip_state`, so no file is ever unpickled.

    Raises:
        UserInputError: unknown architecture, bad ``model_kwargs`` or ``preprocess_cfg``,
            weights that are neither a file nor a tag / hub repo that could be fetched, or
            weights of another architecture.
    """
    import open_clip  # lazy: importing open_clip takes seconds

    known = open_clip.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UserInputError(f"unknown open_clip architecture {name!r}.{hint}")
    arch = check_arch(model_kwargs or {})
    preprocess = clean_preprocess_cfg(preprocess_cfg or {})
    state = None
    if pretrained:
        weights, shipped = resolve_pretrained(name, pretrained, cache_dir)
        preprocess = {**shipped, **preprocess}
        state = read_state_dict(weights, what="--pretrained")
    try:
        with _quiet_logging():  # it warns that no weights were loaded: mmkit loads them below
            model = open_clip.create_model(
                name,
                pretrained=None,
                load_weights=False,
                pretrained_image=False,
                pretrained_text=False,
                device=torch.get_default_device(),  # "meta" when a checkpoint is pre-checked
                force_image_size=force_image_size,
                force_context_length=force_context_length,
                force_preprocess_cfg=preprocess or None,
                **arch,
            )
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as exc:
        reason = " ".join(str(exc).split())  # one line
        raise UserInputError(f"open_clip {name!r}: cannot build it ({reason[:300]})") from exc
    if state is not None:
        load_open_clip_state(model, state, weights=weights, arch=name)
    context_length = getattr(model, "context_length", None)
    if context_length is None:
        context_length = getattr(model.text, "context_length", 77)
    embed_dim = arch.get("embed_dim", open_clip.get_model_config(name)["embed_dim"])
    wrapped = OpenClipModel(
        model, name=name, embed_dim=embed_dim, context_length=int(context_length)
    )
    wrapped.config = {  # what rebuilds it, weights aside (the open_clip_model backbone's kwargs)
        "model_name": name,
        "pretrained": None,
        "force_image_size": force_image_size,
        "force_context_length": force_context_length,
        "model_kwargs": model_kwargs,
        "preprocess_cfg": wrapped.preprocess_cfg,
    }
    return wrapped


@register_backbone("open_clip_model", modality="mm", loads=("pretrained",))
def open_clip_model(
    *,
    num_classes: int = 0,
    model_name: str = "ViT-B-32",
    pretrained: str | None = None,
    force_image_size: int | None = None,
    force_context_length: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    preprocess_cfg: dict[str, Any] | None = None,
) -> OpenClipModel:
    """Any open_clip architecture (weights from a local file, a tag or a hub repo) as an mm
    model, with the image preprocessing of those weights unless ``preprocess_cfg`` says.

    ``model_name`` is the open_clip architecture (``open_clip.list_models()``); the keyword is
    not ``name`` because ``create_backbone(name, **kwargs)`` takes the plugin name.
    """
    if num_classes != 0:
        raise UserInputError(
            f"image-text models take no num_classes (got {num_classes}); use zero-shot prompts"
        )
    return create_open_clip(
        model_name,
        pretrained,
        force_image_size=force_image_size,
        force_context_length=force_context_length,
        model_kwargs=model_kwargs,
        preprocess_cfg=preprocess_cfg,
    )
