"""The package's import graph: no cycles, and no module imports one from a layer above its own.

Every import statement under ``samadapter/`` counts, wherever it stands: at module level, inside
functions (a lazy import runs as soon as the function does) and under ``if TYPE_CHECKING:`` (a
type a module names is part of its design even when it is not imported at run time). The one
exemption is the package root's ``__getattr__`` (``samadapter.Segmenter``,
``samadapter.load_segmenter``): a lazy public facade. Importing any submodule runs the root first,
so the root can only be a leaf, and its facade is the one place that names modules above it.

The layering is docs/architecture.md's ("Where things live"), written here as data.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "samadapter"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # torch-free leaves, no I/O; "samadapter" is the root package itself (its __version__)
    ("leaves", ("samadapter", "errors", "config", "registry", "presets")),
    ("vocabulary", ("vocab",)),  # class lists (modeling's classifier takes a Vocabulary)
    ("modeling", ("modeling",)),  # pure torch
    # the result type and what sits beside it; the file helpers the pipeline and the model
    # loader use (atomic writes, image decoding, the text-embedding cache) know no result type
    (
        "core",
        (
            "structures",
            "postprocess",
            "runtime",
            "checkpoint",
            "weights",
            "io.atomic",
            "io.images",
            "io.text_cache",
        ),
    ),
    ("pipeline", ("pipeline",)),
    ("models", ("models",)),
    ("io and data", ("io", "data")),
    ("runs", ("batch", "eval", "train", "distributed")),
    ("interfaces", ("cli", "app", "__main__")),
)
"""Bottom to top; a module may import modules of its own layer or of layers below. A prefix
names a module and everything under it; the most specific prefix wins."""

ONLY_IMPORTERS = {
    "open_clip": {"samadapter.modeling.clip_backbone"},
    "segment_anything": {"samadapter.modeling.proposer"},
    "sam2": {"samadapter.modeling.proposer"},
}
"""Third-party packages only one module may import (the developer guide's rule)."""

FACADE = ("samadapter", "__getattr__")
"""The root package's lazy attributes: exempt (see the module docstring)."""

Graph = Mapping[str, Iterable[str]]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``samadapter/io/coco.py`` -> ``samadapter.io.coco``; a package is its ``__init__``."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules a module's source imports (anywhere in it), itself left out.

    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is one of the ``known``
    modules, else ``pkg``. Relative imports are resolved against ``name``. The root facade's
    imports are left out.
    """
    found: set[str] = set()
    here = name.split(".") if is_package else name.split(".")[:-1]

    def visit(node: ast.AST, in_facade: bool) -> None:
        for child in ast.iter_child_nodes(node):
            facade = in_facade or (
                (name, getattr(child, "name", None)) == FACADE
                and isinstance(child, ast.FunctionDef)
            )
            if isinstance(child, ast.Import) and not facade:
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and not facade:
                base = child.module or ""
                if child.level:
                    anchor = here[: len(here) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
            visit(child, facade)

    visit(ast.parse(source), False)
    return found - {name}


def package_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports, for every ``.py`` file under ``root``."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    return {name: imports & known for name, imports in all_imports(files, known).items()}


def all_imports(files: Mapping[str, Path], known: set[str]) -> dict[str, set[str]]:
    """Module -> everything it imports, third-party modules included."""
    return {
        name: imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None`` when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def layer_of(module: str, layers: Sequence[tuple[str, tuple[str, ...]]] = LAYERS) -> int | None:
    """Index in ``layers`` of the most specific prefix naming ``module`` (``None``: none)."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            full = "samadapter" if prefix == "samadapter" else f"samadapter.{prefix}"
            # the root names itself only: "samadapter." would be every module
            named = module == full or (full != "samadapter" and module.startswith(full + "."))
            if named and (best is None or len(full) > best[0]):
                best = (len(full), index)
    return None if best is None else best[1]


def upward_imports(
    graph: Graph, layers: Sequence[tuple[str, tuple[str, ...]]] = LAYERS
) -> list[str]:
    """``a (layer) imports b (higher layer)`` lines, and ``a: no layer`` for unplaced modules."""
    problems = []
    for module in sorted(graph):
        own = layer_of(module, layers)
        if own is None:
            problems.append(f"{module}: no layer (add it to LAYERS)")
            continue
        for target in sorted(graph[module]):
            theirs = layer_of(target, layers)
            if theirs is not None and theirs > own:
                problems.append(
                    f"{module} ({layers[own][0]}) imports {target} ({layers[theirs][0]})"
                )
    return problems


# -- the package -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return package_graph()


def test_the_graph_sees_top_level_lazy_and_type_checking_imports(graph: dict[str, set[str]]):
    assert len(graph) > 60
    assert "samadapter.errors" in graph["samadapter.config"]  # module level
    assert "samadapter.io.summary" in graph["samadapter.cli.progress"]  # inside a function
    assert "samadapter.batch" in graph["samadapter.cli.progress"]  # under TYPE_CHECKING
    assert "samadapter.batch.records" in graph["samadapter.batch"]  # a package's __init__
    assert graph["samadapter"] == set()  # the facade is exempt


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_module_imports_a_layer_above_its_own(graph: dict[str, set[str]]) -> None:
    assert upward_imports(graph) == []


def test_the_feature_store_holds_arrays_not_the_pipeline(graph: dict[str, set[str]]) -> None:
    store = graph["samadapter.io.feature_store"]
    assert not {"samadapter.pipeline", "samadapter.models"} & store
    assert "samadapter.modeling.proposer" not in store  # SAM's wrapper: segment_anything loads


def test_open_clip_sam_and_sam2_have_one_importer_each() -> None:
    files = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    importers: dict[str, set[str]] = {package: set() for package in ONLY_IMPORTERS}
    for module, imports in all_imports(files, set(files)).items():
        for package in {i.split(".")[0] for i in imports} & set(ONLY_IMPORTERS):
            importers[package].add(module)
    assert all(importers[package] <= ONLY_IMPORTERS[package] for package in importers), importers
    # the checker sees the owners' own imports (sam2's goes through importlib, by name)
    assert importers["open_clip"] and importers["segment_anything"]


# -- the checker itself --------------------------------------------------------------------------


def test_a_planted_cycle_is_found() -> None:
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(planted) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b", "c"}}) is None


def test_a_planted_upward_import_is_found() -> None:
    layers = (("low", ("samadapter", "errors")), ("mid", ("io",)), ("top", ("cli",)))
    planted = {
        "samadapter.errors": {"samadapter.io.coco"},  # up
        "samadapter.io.coco": {"samadapter.errors", "samadapter"},  # down: fine
        "samadapter.cli.main": {"samadapter.io.coco"},  # down: fine
        "samadapter.unplaced": set(),
    }
    assert upward_imports(planted, layers) == [
        "samadapter.errors (low) imports samadapter.io.coco (mid)",
        "samadapter.unplaced: no layer (add it to LAYERS)",
    ]
    assert layer_of("samadapter", layers) == 0
    assert layer_of("samadapter.errors_extra", layers) is None  # a prefix is a whole name


def test_imports_are_resolved_like_python_does() -> None:
    known = {"samadapter", "samadapter.io", "samadapter.io.coco", "samadapter.io.atomic"}
    source = (
        "from . import atomic\n"
        "from .coco import to_coco\n"
        "def f():\n"
        "    import samadapter.io.coco as c\n"
        "if TYPE_CHECKING:\n"
        "    from samadapter import io\n"
        "import numpy\n"
    )
    assert imports_of(source, "samadapter.io.yolo", False, known) == {
        "samadapter.io.atomic",
        "samadapter.io.coco",
        "samadapter.io",
        "numpy",
    }
    facade = "def __getattr__(name):\n    from samadapter.io import coco\nimport samadapter.io\n"
    assert imports_of(facade, "samadapter", True, known) == {"samadapter.io"}
