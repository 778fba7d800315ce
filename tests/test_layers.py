"""The layer rule (docs/architecture.md), read from the source: every ``liverec`` import of every
module under src/, wherever it stands (module level, inside a function, under TYPE_CHECKING),
goes to its own layer or below, and the packages' imports form no cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "liverec"

# Bottom-up. A package imports only from its own layer or a lower one.
LAYERS: list[set[str]] = [
    {"settings", "core", "__init__"},
    {"events", "store", "policy", "model", "search"},
    {"trainer", "evaluate", "registry"},
    {"serve", "sim", "cli", "__main__"},
]
LAYER_OF = {pkg: n for n, layer in enumerate(LAYERS) for pkg in layer}


def package_of(module: str) -> str:
    """``liverec.core.vocab`` -> ``core``; ``liverec`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, imported liverec module) for every import in the file, relative ones resolved."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            yield node.lineno, base


def violations(root: Path) -> tuple[list[str], list[str], dict[str, set[str]]]:
    """(upward imports, modules in no layer, package graph) of the tree under ``root``."""
    upward, unplaced = [], []
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        me = module_name(path, root)
        here = package_of(me) if "." in me else "__init__"
        if path.parent == root and path.name != "__init__.py":
            here = path.stem  # __main__.py
        if here not in LAYER_OF:
            unplaced.append(me)
            continue
        for line, target in imports_of(path, root):
            if target != root.name and not target.startswith(root.name + "."):
                continue
            there = package_of(target)
            if there not in LAYER_OF:
                unplaced.append(target)
                continue
            if there != here:
                graph.setdefault(here, set()).add(there)
            if LAYER_OF[there] > LAYER_OF[here]:
                upward.append(f"{path.relative_to(root.parent)}:{line} imports {target} ({here} < {there})")
    return upward, sorted(set(unplaced)), graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each package cycle once, found by depth-first search."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                loop = path[path.index(nxt) :]
                if frozenset(loop) not in seen:
                    seen.add(frozenset(loop))
                    found.append([*loop, nxt])
            else:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_every_import_goes_to_its_own_layer_or_below() -> None:
    upward, unplaced, _ = violations(SRC)
    assert not unplaced, f"packages in no layer (add them to LAYERS and docs/architecture.md): {unplaced}"
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_packages_import_each_other_in_no_cycle() -> None:
    _, _, graph = violations(SRC)
    assert not cycles(graph), f"package import cycles: {cycles(graph)}"


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("core/vocab.py", "from liverec.serve.engine import Engine\n"),
        ("model/text.py", "def f() -> None:\n    from liverec.trainer.offline import train\n"),
        ("store/base.py", "from ..registry import registry\n"),
    ],
)
def test_the_check_catches_an_upward_import(tmp_path: Path, where: str, line: str) -> None:
    """The rule is only worth something if it can fail: plant an upward import in a copy of a tree."""
    root = tmp_path / "liverec"
    for pkg in ["core", "model", "store", "serve", "trainer", "registry"]:
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / where).write_text("import os\n" + line)
    upward, _, _ = violations(root)
    assert len(upward) == 1 and where in upward[0]


def test_the_check_finds_a_cycle_within_a_layer() -> None:
    assert cycles({"events": {"store"}, "store": {"events"}, "model": {"store"}}) == [
        ["events", "store", "events"]
    ]
