"""mmkit.registry: registration, duplicates, "did you mean", filtering, describe, MMKIT_PLUGINS."""

from __future__ import annotations

import inspect
import sys
import textwrap

import pytest
import torch
from torch import nn

import mmkit.registry as registry
from mmkit.errors import UnknownPluginError, UserInputError
from mmkit.registry import (
    BACKBONES,
    PREPROCESSORS,
    create_backbone,
    create_preprocessor,
    describe,
    list_plugins,
    register_backbone,
    register_preprocessor,
)

BB = "zz_registry_test_backbone"
PP = "zz_registry_test_preproc"


class _TinyBackbone(nn.Module):
    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        self.num_features = width
        self.body = nn.Linear(3, width)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x):
        return self.body(x)

    def forward_head(self, f):
        return self.head(f)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


@pytest.fixture
def throwaway():
    """A backbone (video) and a preprocessor (audio) that exist only for one test."""

    @register_backbone(BB, modality="video", tags=("tiny", "test"))
    def zz_backbone(*, num_classes: int, width: int = 8, **extra):
        """Tiny linear backbone for registry tests.

        Second docstring line, not part of the description.
        """
        return _TinyBackbone(num_classes, width)

    @register_preprocessor(PP, modality="audio")
    def zz_preproc(*, gain: float = 2.0):
        """Multiply by a gain."""

        class Gain(nn.Module):
            def forward(self, x):
                return x * gain

        return Gain()

    yield zz_backbone, zz_preproc
    BACKBONES.unregister(BB)
    PREPROCESSORS.unregister(PP)


def test_register_and_create(throwaway):
    factory, _ = throwaway
    assert BB in BACKBONES and BB not in PREPROCESSORS
    spec = BACKBONES.get(BB)
    assert spec.factory is factory
    assert (spec.name, spec.kind, spec.modality) == (BB, "backbone", "video")
    assert spec.tags == ("tiny", "test")
    assert spec.module == __name__
    assert spec.description == "Tiny linear backbone for registry tests."
    model = create_backbone(BB, num_classes=5, width=4)
    assert model.num_features == 4
    assert model.head.out_features == 5
    gain = create_preprocessor(PP, gain=3.0)
    assert float(gain(torch.ones(1))) == 3.0


def test_unregister_removes(throwaway):
    BACKBONES.unregister(BB)
    assert BB not in BACKBONES
    with pytest.raises(UnknownPluginError):
        BACKBONES.get(BB)


def test_decorators_return_the_factory_itself():
    """Registering hands the very function back (a wrapper would break ``is``, pickling by
    name and introspection) and the registry keeps that same function."""

    def backbone(*, num_classes: int) -> nn.Module:
        return nn.Linear(3, num_classes)

    def preproc(*, gain: float = 2.0) -> nn.Module:
        return nn.Identity()

    try:
        assert register_backbone("zz_identity", modality="audio")(backbone) is backbone
        assert register_preprocessor("zz_identity", modality="audio")(preproc) is preproc
        assert BACKBONES.get("zz_identity").factory is backbone
        assert PREPROCESSORS.get("zz_identity").factory is preproc
    finally:
        BACKBONES.unregister("zz_identity")
        PREPROCESSORS.unregister("zz_identity")


def test_duplicate_name_raises(throwaway):
    with pytest.raises(ValueError, match="already registered"):

        @register_backbone(BB, modality="audio")
        def again(*, num_classes: int):
            return nn.Identity()

    # the first registration survives
    assert BACKBONES.get(BB).modality == "video"


def test_same_name_in_other_registry_is_allowed(throwaway):
    @register_preprocessor(BB, modality="video")
    def same_name():
        return nn.Identity()

    try:
        assert BB in PREPROCESSORS and BB in BACKBONES
    finally:
        PREPROCESSORS.unregister(BB)


def test_bad_modality_raises():
    with pytest.raises(UserInputError, match=r"modality must be one of .*'sound'"):
        register_backbone("zz_bad_modality", modality="sound")
    assert "zz_bad_modality" not in BACKBONES


def test_unknown_name_suggests_and_lists(throwaway):
    with pytest.raises(UnknownPluginError) as info:
        BACKBONES.get(BB[:-1] + "x")  # one letter off
    msg = str(info.value)
    assert f"Did you mean {BB!r}?" in msg
    assert "Available:" in msg
    assert BB in msg.split("Available:")[1]
    # str() is a plain sentence, not KeyError's quoted repr
    assert msg.startswith("unknown backbone")
    # an UnknownPluginError is a user error (CLI exit 1) and a KeyError
    assert isinstance(info.value, UserInputError) and isinstance(info.value, KeyError)


def test_unknown_name_without_close_match_has_no_hint(throwaway):
    with pytest.raises(UnknownPluginError) as info:
        BACKBONES.get("qqqqqqqqqqqqqqqqqqqq")
    assert "Did you mean" not in str(info.value)
    assert BB in str(info.value)


def test_create_with_bad_kwargs_is_user_error(throwaway):
    with pytest.raises(UserInputError, match=f"backbone {BB!r}"):
        create_backbone(BB)  # num_classes missing
    with pytest.raises(UserInputError, match="nope"):
        create_preprocessor(PP, nope=1)


def test_list_plugins_filters_by_kind_and_modality(throwaway):
    everything = list_plugins()
    names = [s.name for s in everything]
    assert BB in names and PP in names
    backbones = list_plugins(kind="backbone")
    assert {s.kind for s in backbones} == {"backbone"}
    assert BB in [s.name for s in backbones] and PP not in [s.name for s in backbones]
    preprocs = list_plugins(kind="preprocessor")
    assert {s.kind for s in preprocs} == {"preprocessor"}
    assert PP in [s.name for s in preprocs]
    video = list_plugins(modality="video")
    assert {s.modality for s in video} == {"video"}
    assert BB in [s.name for s in video] and PP not in [s.name for s in video]
    audio_pre = list_plugins(kind="preprocessor", modality="audio")
    assert PP in [s.name for s in audio_pre]
    assert all(s.kind == "preprocessor" and s.modality == "audio" for s in audio_pre)
    assert list_plugins(kind="backbone", modality="audio") == [
        s for s in backbones if s.modality == "audio"
    ]
    with pytest.raises(UserInputError, match="--kind must be one of"):
        list_plugins(kind="backbones")


def test_specs_sorted_by_modality_then_name(throwaway):
    specs = BACKBONES.specs()
    keys = [(s.modality, s.name) for s in specs]
    assert keys == sorted(keys)
    assert BACKBONES.names("video") == sorted(BACKBONES.names("video"))
    assert [s.name for s in BACKBONES] == [s.name for s in specs]


def test_describe(throwaway):
    assert describe(BB).kind == "backbone"
    assert describe(PP).kind == "preprocessor"
    with pytest.raises(UnknownPluginError) as info:
        describe(PP + "s")
    assert f"Did you mean {PP!r}?" in str(info.value)
    assert "unknown plugin" in str(info.value)


def test_signature_and_to_dict(throwaway):
    spec = BACKBONES.get(BB)
    # **extra is left out; required keyword-only args say so; defaults are repr'd
    assert spec.signature() == {"num_classes": "required", "width": "8"}
    assert PREPROCESSORS.get(PP).signature() == {"gain": "2.0"}
    d = spec.to_dict()
    assert d == {
        "name": BB,
        "kind": "backbone",
        "modality": "video",
        "description": "Tiny linear backbone for registry tests.",
        "tags": ["tiny", "test"],
        "module": __name__,
        "arguments": {"num_classes": "required", "width": "8"},
        "input": "clips",
        "weights": {},
    }


def test_description_is_first_docstring_paragraph():
    @register_preprocessor("zz_multiline", modality="text")
    def multiline():
        """A ``tiny`` preprocessor whose summary
        runs over two lines.

        Details that are not part of the description.
        """
        return nn.Identity()

    try:
        spec = PREPROCESSORS.get("zz_multiline")
        assert spec.description == "A tiny preprocessor whose summary runs over two lines."
    finally:
        PREPROCESSORS.unregister("zz_multiline")


def test_undocumented_factory_has_empty_description():
    @register_preprocessor("zz_nodoc", modality="text")
    def nodoc():
        return nn.Identity()

    try:
        assert PREPROCESSORS.get("zz_nodoc").description == ""
    finally:
        PREPROCESSORS.unregister("zz_nodoc")


@pytest.fixture
def fresh_plugin_loading(monkeypatch):
    """Let load_plugins() run again; restore the flag and drop what the test registered."""
    registry.load_plugins()  # built-ins are in, so re-running only adds the test's modules
    monkeypatch.setattr(registry, "_loaded", False)
    before = {k: set(r._specs) for k, r in registry.REGISTRIES.items()}
    modules_before = set(sys.modules)
    yield
    for kind, reg in registry.REGISTRIES.items():
        for name in set(reg._specs) - before[kind]:
            reg.unregister(name)
    for mod in set(sys.modules) - modules_before:
        if mod.startswith("zz_mmkit_plugin"):
            del sys.modules[mod]


def test_mmkit_plugins_env_loads_module(tmp_path, monkeypatch, fresh_plugin_loading):
    (tmp_path / "zz_mmkit_plugin_mod.py").write_text(
        textwrap.dedent(
            '''
            from torch import nn
            from mmkit import register_backbone

            @register_backbone("zz_env_plugin", modality="image")
            def zz_env_plugin(*, num_classes: int, depth: int = 3):
                """Loaded through MMKIT_PLUGINS."""
                return nn.Linear(depth, num_classes)
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MMKIT_PLUGINS", " zz_mmkit_plugin_mod ,")
    assert "zz_env_plugin" not in BACKBONES._specs
    spec = describe("zz_env_plugin")  # triggers load_plugins()
    assert spec.module == "zz_mmkit_plugin_mod"
    assert spec.description == "Loaded through MMKIT_PLUGINS."
    assert spec.signature() == {"num_classes": "required", "depth": "3"}
    assert "zz_env_plugin" in [s.name for s in list_plugins(modality="image")]
    assert create_backbone("zz_env_plugin", num_classes=2).in_features == 3
    assert registry._loaded is True


def test_mmkit_plugins_missing_module_is_user_error(monkeypatch, fresh_plugin_loading):
    monkeypatch.setenv("MMKIT_PLUGINS", "zz_mmkit_plugin_does_not_exist")
    with pytest.raises(UserInputError, match="MMKIT_PLUGINS: cannot import"):
        registry.load_plugins()


def test_load_plugins_runs_once(tmp_path, monkeypatch, fresh_plugin_loading):
    counter = tmp_path / "count.txt"
    (tmp_path / "zz_mmkit_plugin_count.py").write_text(
        f"import pathlib\np = pathlib.Path({str(counter)!r})\n"
        "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MMKIT_PLUGINS", "zz_mmkit_plugin_count")
    registry.load_plugins()
    assert counter.read_text() == "1"
    del sys.modules["zz_mmkit_plugin_count"]  # a second import would count again
    registry.load_plugins()
    list_plugins()
    assert counter.read_text() == "1"


def test_variant_changes_defaults_and_keeps_the_signature():
    from mmkit.registry import variant

    def base(*, num_classes: int, width: int = 32, depth: int = 2) -> tuple[int, int, int]:
        return num_classes, width, depth

    tiny = variant(base, "Tiny base.", width=8)
    assert tiny(num_classes=3) == (3, 8, 2)
    assert tiny(num_classes=3, width=16, depth=1) == (3, 16, 1)
    assert inspect.signature(tiny).parameters["width"].default == 8
    assert tiny.__doc__ == "Tiny base."
    with pytest.raises(TypeError, match="no argument"):
        variant(base, "bad", height=4)
