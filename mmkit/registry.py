"""Plugin registry for backbones, preprocessors and dataset layouts.

One :class:`Registry` class with three instances, ``BACKBONES``, ``PREPROCESSORS`` and ``LAYOUTS``.
The decorators :func:`register_backbone`, :func:`register_preprocessor` and :func:`register_layout`
are the only way in::

    @register_backbone("audio_cnn", modality="audio")
    def audio_cnn(*, num_classes: int, width: int = 32) -> nn.Module: ...

Built-ins register when :func:`load_plugins` imports their packages; third-party plugins are modules
named by the ``mmkit.plugins`` entry-point group or by ``MMKIT_PLUGINS=pkg.mod[,pkg.other]``.
:class:`PluginSpec` and the checks of a factory's arguments are :mod:`mmkit.plugin_spec`.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from mmkit.errors import CheckpointError, UnknownPluginError, UserInputError
from mmkit.plugin_spec import PluginSpec, bind_arguments, check_config_kwargs

__all__ = [
    "ANY",
    "BACKBONES",
    "ENTRY_POINT_GROUP",
    "LAYOUTS",
    "MODALITIES",
    "PREPROCESSORS",
    "REGISTRIES",
    "PluginSpec",
    "Registry",
    "bind_arguments",
    "check_config_kwargs",
    "create_backbone",
    "create_preprocessor",
    "describe",
    "list_plugins",
    "load_plugins",
    "register_backbone",
    "register_layout",
    "register_preprocessor",
    "variant",
]

MODALITIES = ("audio", "video", "image", "text", "mm")
ENTRY_POINT_GROUP = "mmkit.plugins"
ANY = "any"  # a layout's modality when it reads sources of every modality
_BUILTIN_MODULES = ("mmkit.preprocess", "mmkit.backbones", "mmkit.data.layouts")
# what a backbone's forward takes (mmkit/backbones/base.py), and the default per modality
INPUTS = ("log_mel", "waveform", "clips", "image", "tokens", "image_text")
DEFAULT_INPUT = {"audio": "log_mel", "video": "clips", "image": "image", "text": "tokens",
                 "mm": "image_text"}  # fmt: skip


class Registry:
    """A name -> :class:`PluginSpec` map that refuses duplicates and suggests near names."""

    def __init__(self, kind: str, modalities: tuple[str, ...] = MODALITIES) -> None:
        self.kind = kind
        self.modalities = modalities
        self._specs: dict[str, PluginSpec] = {}

    def register(
        self,
        name: str,
        *,
        modality: str,
        tags: tuple[str, ...] = (),
        loads: tuple[str, ...] = (),
        input: str | None = None,
        weights: Mapping[str, Any] | None = None,
        detect: Callable[..., bool] | None = None,
        fallback: bool = False,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if modality not in self.modalities:
            raise UserInputError(
                f"modality must be one of {', '.join(self.modalities)}, got {modality!r}"
            )
        if input is not None and input not in INPUTS:
            raise UserInputError(f"input must be one of {', '.join(INPUTS)}, got {input!r}")

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._specs:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            doc = inspect.getdoc(factory) or ""
            self._specs[name] = PluginSpec(
                name=name,
                kind=self.kind,
                modality=modality,
                factory=factory,
                description=" ".join(doc.split("\n\n")[0].split()).replace("``", ""),
                tags=tuple(tags),
                module=factory.__module__,
                loads=tuple(loads),
                input=input or (DEFAULT_INPUT[modality] if self.kind == "backbone" else None),
                weights=dict(weights or {}),
                detect=detect,
                fallback=fallback,
            )
            return factory

        return decorator

    def get(self, name: str) -> PluginSpec:
        load_plugins()
        try:
            return self._specs[name]
        except KeyError:
            names = sorted(self._specs)
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownPluginError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(names)}"
            ) from None

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build plugin ``name``. Arguments are bound to the factory's signature first: an unknown
        or missing argument is a :class:`UserInputError` naming it; a ``TypeError`` raised inside
        the factory is a bug and keeps its traceback."""
        spec = self.get(name)
        bind_arguments(spec, kwargs)
        return spec.factory(**kwargs)

    def check_config(self, name: Any, kwargs: Any, *, source: str) -> PluginSpec:
        """The plugin a checkpoint names, once its arguments pass :func:`check_config_kwargs`."""
        if not isinstance(name, str):
            raise CheckpointError(f"{source}: {self.kind} name must be a string")
        try:
            spec = self.get(name)
        except UnknownPluginError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
        check_config_kwargs(spec, kwargs, source)
        return spec

    def create_from_config(self, name: Any, kwargs: Any, *, source: str, **fixed: Any) -> Any:
        """Build a plugin named by a checkpoint's ``config.json``: the config is data, not code.

        ``kwargs`` must be plain JSON values for named arguments of the factory, none of which may
        make it load a file (see :func:`check_config_kwargs`); ``fixed`` are the arguments mmkit
        itself supplies (``num_classes``). Every refusal is a :class:`CheckpointError` naming
        ``source``.
        """
        spec = self.check_config(name, kwargs, source=source)
        try:
            bind_arguments(spec, {**kwargs, **fixed})
            return spec.factory(**kwargs, **fixed)
        except (UserInputError, ValueError) as exc:  # values a factory refuses
            raise CheckpointError(f"{source}: {exc}") from exc

    def names(self, modality: str | None = None) -> list[str]:
        return [s.name for s in self.specs(modality)]

    def specs(self, modality: str | None = None) -> list[PluginSpec]:
        load_plugins()
        return sorted(
            (s for s in self._specs.values() if modality in (None, s.modality)),
            key=lambda s: (s.modality, s.name),
        )

    def in_order(self, modality: str) -> list[PluginSpec]:
        """The plugins for ``modality`` (or for any) in registration order: built-ins, then
        entry points, then ``MMKIT_PLUGINS`` modules; fallback layouts last. Layouts are tried
        in this order."""
        load_plugins()
        specs = [s for s in self._specs.values() if s.modality in (modality, ANY)]
        return sorted(specs, key=lambda s: s.fallback)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._specs

    def __iter__(self) -> Iterator[PluginSpec]:
        return iter(self.specs())

    def unregister(self, name: str) -> None:
        """Remove a plugin (for tests that register throw-away plugins)."""
        self._specs.pop(name, None)


BACKBONES = Registry("backbone")
PREPROCESSORS = Registry("preprocessor")
LAYOUTS = Registry("layout", (*MODALITIES, ANY))
REGISTRIES = {"backbone": BACKBONES, "preprocessor": PREPROCESSORS, "layout": LAYOUTS}


def register_backbone(
    name: str,
    *,
    modality: str,
    tags: tuple[str, ...] = (),
    loads: tuple[str, ...] = (),
    input: str | None = None,
    weights: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``factory(*, num_classes, **kwargs) -> nn.Module`` as a backbone.

    The module must expose ``num_features``, ``forward_features(x)`` and ``forward_head(features)``.
    ``input`` is what ``forward`` takes: ``log_mel`` (the audio default), ``waveform`` or ``clips``
    (the video default). ``weights`` maps tags to the pretrained weights the backbone can load
    (:class:`mmkit.backbones.pretrained.WeightsSpec`, loaded by ``load_pretrained``). ``loads``
    names the arguments that point the factory at weights to load (a path or tag): a checkpoint's
    ``config.json`` may never set them.
    """
    return BACKBONES.register(
        name, modality=modality, tags=tags, loads=loads, input=input, weights=weights
    )


def register_preprocessor(
    name: str, *, modality: str, tags: tuple[str, ...] = (), loads: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``factory(**params) -> nn.Module`` (batched, runs on the training device)."""
    return PREPROCESSORS.register(name, modality=modality, tags=tags, loads=loads)


def register_layout(
    name: str, *, modality: str | None, detect: Callable[..., bool], fallback: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``read(path, options)`` as a dataset layout: a local ``--dataset`` path that
    ``detect(path, options) -> bool`` accepts (a folder, or a file) is read by it::

        @register_layout("esc50", modality="audio", detect=lambda p, o: (p / "meta").is_dir())
        def read_esc50(path: Path, options: SourceOptions) -> SourceData: ...

    ``modality`` is ``"audio"``, ``"video"`` or ``"mm"`` (``None``: every one). Audio and video
    layouts get ``mmkit.data.records.SourceOptions`` and return ``SourceData``; image-text ones get
    ``mmkit.data.captions.CaptionOptions`` and return ``CaptionData``. Layouts are tried in
    registration order (built-ins first: manifests and HF files, then the dataset layouts), and
    ``fallback`` ones after all others (the plain folder reader).
    """
    return LAYOUTS.register(name, modality=modality or ANY, detect=detect, fallback=fallback)


_loaded = False


def load_plugins() -> None:
    """Import the built-in plugins, then entry-point and ``MMKIT_PLUGINS`` modules, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: plugin modules call the decorators, which call back in here
    try:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        plugins = [("entry point", ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)]
        env = os.environ.get("MMKIT_PLUGINS", "")
        plugins += [("MMKIT_PLUGINS", m.strip()) for m in env.split(",") if m.strip()]
        for origin, module in plugins:
            try:
                importlib.import_module(module)
            except Exception as exc:
                raise UserInputError(f"{origin}: cannot import {module!r}: {exc}") from exc
    except BaseException:
        _loaded = False
        raise


def variant(base: Callable[..., Any], doc: str, **defaults: Any) -> Callable[..., Any]:
    """``base`` with other defaults, as its own factory (timm style: one line per variant)::

        audio_cnn_test = register_backbone("audio_cnn_test", modality="audio")(
            variant(audio_cnn, "Tiny log-mel CNN for fast tests.", widths=(8, 16, 32))
        )

    The variant keeps ``base``'s signature with the new defaults, so ``mmkit describe`` shows them.
    """
    signature = inspect.signature(base)
    unknown = set(defaults) - set(signature.parameters)
    if unknown:
        raise TypeError(f"{base.__name__} has no argument(s) {sorted(unknown)}")

    def factory(**kwargs: Any) -> Any:
        return base(**{**defaults, **kwargs})

    params = [
        p.replace(default=defaults[p.name]) if p.name in defaults else p
        for p in signature.parameters.values()
    ]
    factory.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    factory.__doc__ = doc
    factory.__module__ = base.__module__
    factory.__qualname__ = factory.__name__ = f"{base.__name__}_variant"
    return factory


def create_backbone(name: str, **kwargs: Any) -> Any:
    """Build a registered backbone: ``create_backbone("audio_cnn", num_classes=12)``."""
    return BACKBONES.create(name, **kwargs)


def create_preprocessor(name: str, **kwargs: Any) -> Any:
    """Build a registered preprocessor: ``create_preprocessor("log_mel", n_mels=64)``."""
    return PREPROCESSORS.create(name, **kwargs)


def list_plugins(
    kind: str | None = None,
    modality: str | None = None,
    patterns: Sequence[str] | str | None = None,
) -> list[PluginSpec]:
    """Every registered plugin, optionally filtered by kind, modality and name ``patterns``
    (shell wildcards, case-insensitive, any of them may match: ``"*vit*"``, as in timm's
    ``list_models``)."""
    if kind is not None and kind not in REGISTRIES:
        raise UserInputError(f"--kind must be one of {', '.join(REGISTRIES)}, got {kind!r}")
    if modality is not None and modality not in MODALITIES:
        raise UserInputError(f"--modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    regs = [REGISTRIES[kind]] if kind else list(REGISTRIES.values())
    specs = [spec for reg in regs for spec in reg.specs(modality)]
    if patterns:
        wanted = [patterns.lower()] if isinstance(patterns, str) else [p.lower() for p in patterns]
        specs = [s for s in specs if any(fnmatch.fnmatchcase(s.name.lower(), p) for p in wanted)]
    return specs


def describe(name: str) -> PluginSpec:
    """The spec of a backbone, preprocessor or layout by name (in that order)."""
    for reg in REGISTRIES.values():
        if name in reg:
            return reg.get(name)
    every = sorted(s.name for s in list_plugins())
    close = difflib.get_close_matches(name, every, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownPluginError(f"unknown plugin {name!r}.{hint} Available: {', '.join(every)}")
