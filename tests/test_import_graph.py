"""The project's packages have no import cycles, counting every import anywhere in a module.

The graph is built with ``ast`` from the source, so function-level and ``TYPE_CHECKING`` imports
count as much as top-level ones. Relative imports are resolved; ``from pkg import name`` is an
edge to ``pkg.name`` when that is a module, else to ``pkg``; a package is its ``__init__``.
Imports of anything outside the package are ignored.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def module_names(root: Path) -> dict[str, Path]:
    """Every module under the package folder ``root``: dotted name -> file."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _import_targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names one import statement may refer to (before filtering to known modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [source] + [f"{source}.{alias.name}" for alias in node.names]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its source)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for target in _import_targets(node, name, is_package):
                    # ``import a.b.c`` names a.b.c; fall back to the longest known prefix.
                    parts = target.split(".")
                    while parts and ".".join(parts) not in modules:
                        parts.pop()
                    if parts:
                        graph[name].add(".".join(parts))
            elif isinstance(node, ast.ImportFrom):
                source, *members = _import_targets(node, name, is_package)
                for member in members:
                    if member in modules:
                        graph[name].add(member)
                    elif source in modules:
                        graph[name].add(source)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None when the graph is acyclic."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if target in on_path:
                return path[path.index(target) :] + [target]
            if target not in done:
                path.append(target)
                on_path.add(target)
                stack.append(iter(sorted(graph[target])))
    return None


# Only packages that have cycles today are expected to fail (strict: fixing them flips the mark).
@pytest.mark.parametrize("package", ["runtime", "scaffolder"])
def test_package_has_no_import_cycles(package: str) -> None:
    graph = import_graph(REPO_ROOT / package)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_function_level_relative_and_init_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    files = {
        "__init__.py": "from .a import thing\n",
        "a.py": "def thing():\n    from pkg.sub import helper\n    return helper\n",
        "sub/__init__.py": "from .b import helper\n",
        "sub/b.py": "from ..a import thing as helper\n",
        "c.py": "import pkg.sub.b\nfrom pkg import a, missing\n",
    }
    for relative, text in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    graph = import_graph(package)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub"},
        "pkg.sub": {"pkg.sub.b"},
        "pkg.sub.b": {"pkg.a"},
        "pkg.c": {"pkg.sub.b", "pkg.a", "pkg"},
    }
    assert find_cycle(graph) == ["pkg.a", "pkg.sub", "pkg.sub.b", "pkg.a"]
    graph["pkg.sub.b"].clear()
    assert find_cycle(graph) is None


def test_recipes_import_no_other_recipe() -> None:
    """A family's recipe imports the shared helpers (families.common), never another recipe."""
    families = REPO_ROOT / "scaffolder" / "families"
    graph = import_graph(REPO_ROOT / "scaffolder")
    recipes = {
        f"scaffolder.families.{path.stem}"
        for path in families.glob("*.py")
        if path.stem not in ("__init__", "common")
    }
    assert len(recipes) >= 11
    crossing = {
        recipe: sorted(graph[recipe] & (recipes | {"scaffolder.families"}))
        for recipe in sorted(recipes)
        if graph[recipe] & (recipes | {"scaffolder.families"})
    }
    assert crossing == {}
