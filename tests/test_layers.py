"""The package's layers (docs/design.md): no import circles, no lower layer importing a higher
one. Imports are read from the source (function-level imports included), so a lazy import cannot
hide an arrow that points the wrong way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mmkit"

# lowest first; a module may import its own layer and the ones below
LAYERS = [
    ("base", ("mmkit.io", "mmkit.metrics", "mmkit.registry", "mmkit.config", "mmkit.configs",
              "mmkit.spec", "mmkit.errors", "mmkit.cache", "mmkit.seeds", "mmkit.runtime",
              "mmkit.events", "mmkit.distributed", "mmkit.plugin_spec")),
    ("models and data", ("mmkit.backbones", "mmkit.preprocess", "mmkit.data")),
    ("engine and tasks", ("mmkit.engine", "mmkit.tasks", "mmkit.losses")),
    ("pipelines", ("mmkit.pipelines",)),
    ("cli", ("mmkit.cli", "mmkit.__main__", "mmkit")),  # the package itself: the public API
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for level, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS and docs/design.md"
    return best


def imports_of(path: Path) -> set[str]:
    """mmkit modules ``path`` imports (``from a import b`` counts ``a.b`` when that is one)."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
    return {m for m in found if m in modules and m != name}


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_points_up_a_layer(module: str) -> None:
    own = layer_of(module)
    up = sorted(m for m in GRAPH[module] if layer_of(m) > own and m != "mmkit")
    assert not up, f"{module} ({LAYERS[own][0]}) imports higher layers: {up}"


# packages of one layer that must not import each other (either way)
APART = [("mmkit.engine", "mmkit.tasks")]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize(("a", "b"), [p for pair in APART for p in (pair, pair[::-1])])
def test_apart_packages_do_not_import_each_other(a: str, b: str) -> None:
    """The engine trains any :class:`~mmkit.engine.trainer.Task`; the tasks know no trainer."""
    wrong = sorted(
        f"{m} -> {d}" for m, deps in GRAPH.items() if _under(m, a) for d in deps if _under(d, b)
    )
    assert not wrong, f"{a} imports {b}: {wrong}"


def test_no_import_circles() -> None:
    """Tarjan's strongly connected components over the import graph: each must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v] - {"mmkit"}:  # every module sits under the package's __init__
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_test_media_generators_are_not_in_the_package() -> None:
    assert not (PACKAGE / "testing").exists()
    for module, deps in GRAPH.items():
        assert not any(d.startswith("tests") for d in deps), module
    text = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    assert "from tests" not in text and "import tests" not in text
